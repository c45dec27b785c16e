"""Exception types: every error the harness raises on bad input names the object and the rule broken."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of all errors raised by harness on bad input or misuse."""


class CircuitError(HarnessError, ValueError):
    """A circuit is malformed: bad name, unknown input, cycle, duplicate output, bad operator parameter."""


class EventsError(HarnessError, ValueError):
    """An events table breaks the replay contract: missing column, decreasing time, unknown trigger."""


class ParamError(CircuitError):
    """A parameter value is out of range or names no parameter of the circuit."""


class DataError(HarnessError, ValueError):
    """A data file is unreadable or breaks its format: the message names the file, the row and the rule."""


class FitError(HarnessError, ValueError):
    """A fit cannot start or go on: nothing to fit, a bad label, no rows left, a non-finite loss."""
