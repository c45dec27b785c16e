"""The production circuits: functions of their settings that return a `Circuit`.

The pipeline's `conf/circuit/*.yaml` name them (`target: harness.circuits:fit_market`), exactly as a user's
own circuit function is named (`target: my_pkg.signals:build`); `harness.examples` re-exports them.
"""

from harness.circuits.fit_market import FIT_MARKET_SIGNALS, fit_market
from harness.circuits.linear_xy import linear_xy
from harness.circuits.pressure import l1_pressure, market_pressure
from harness.circuits.trade_pressure import trade_pressure

__all__ = ["FIT_MARKET_SIGNALS", "fit_market", "l1_pressure", "linear_xy", "market_pressure", "trade_pressure"]
