"""Config nodes that name a function: `target: "module:function"`, the other keys its keyword arguments.

A circuit or stream config names the function that builds it (`target: harness.circuits:fit_market`,
`target: my_pkg.signals:build`; `module.function` works too). Built-in and user functions go the same way:
import the module, check the keys against the function's signature, call it. Configs logged before `target`
existed name a built-in by `circuit.builder` / `stream.kind`; they still load (`harness runs replay`).
Every error is a ConfigError naming the config key and the target.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TARGET = "target"


class ConfigError(HarnessError, ValueError):
    """A composed config names something that does not exist or cannot be used (the key is in the message)."""


def split_target(values: dict[str, Any], group: str, legacy: tuple[str, str] | None = None) -> tuple[str, dict]:
    """The target named by a node's values and the remaining keys (the keyword arguments).

    `legacy` = (key, module): a node without `target` that has `key` (an older logged config) names the
    function `module:<value>`."""
    rest = dict(values)
    spec = rest.pop(TARGET, None)
    if spec is None and legacy is not None and legacy[0] in rest:
        spec = f"{legacy[1]}:{rest.pop(legacy[0])}"
    if not isinstance(spec, str) or not spec.strip() or spec == "???":  # "???": OmegaConf's missing value
        raise ConfigError(
            f"{group}.{TARGET} is not set: name the function that builds the {group}, "
            f"e.g. {group}.{TARGET}=my_pkg.module:function"
        )
    hidden = sorted(k for k in rest if k.startswith("_") and k.endswith("_"))
    if hidden:
        raise ConfigError(f"{group}: keys {hidden} are not supported; name the function with {group}.{TARGET}")
    return spec.strip(), rest


def locate(spec: str, key: str) -> Callable[..., Any]:
    """The function named by `spec` ("pkg.module:function" or "pkg.module.function"); `key` names the config
    key in errors."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr or not all(p.isidentifier() for p in (*module_name.split("."), *attr.split("."))):
        raise ConfigError(f"{key}={spec!r} must name a function as 'package.module:function'")
    module = _import(module_name, spec, key)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(
                f"{key}={spec!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no {attr!r} "
                f"(its functions: {', '.join(public) or 'none'})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}={spec!r} is a {type(obj).__name__}, not a function")
    return obj


def _import(module_name: str, spec: str, key: str) -> Any:
    """Import a target's module; a missing module or one that fails to import is a ConfigError saying why."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ConfigError(f"{key}={spec!r}: importing {module_name!r} failed: {_where(e)}") from e
        raise ConfigError(
            f"{key}={spec!r}: no module named {e.name!r} (working directory {Path.cwd()}); install the package "
            f"that holds it or put its folder on PYTHONPATH (e.g. PYTHONPATH=/path/to/folder harness ...)"
        ) from e
    except Exception as e:  # the module's own code failed: say where
        raise ConfigError(f"{key}={spec!r}: importing {module_name!r} failed: {_where(e)}") from e


def _where(e: BaseException) -> str:
    """`Type: message (file:line)` of an exception, the line being the innermost frame outside importlib."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename]
    at = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames and not isinstance(e, SyntaxError) else ""
    return f"{type(e).__name__}: {e}{at}"


def takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn` has a parameter called `name` (a `**kwargs` does not count)."""
    try:
        param = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind is not inspect.Parameter.VAR_KEYWORD


def call(fn: Callable[..., Any], spec: str, kwargs: dict[str, Any], group: str) -> Any:
    """`fn(**kwargs)`, after checking that `fn` takes these keys (a ConfigError listing its parameters if not)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to check (some builtins): let the call decide
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as e:
            params = ", ".join(signature.parameters) or "none"
            keys = ", ".join(f"{group}.{k}" for k in kwargs) or "none"
            raise ConfigError(
                f"{group}.{TARGET}={spec!r} cannot be called with the config's keys ({keys}): {e}; "
                f"its parameters: {params}"
            ) from None
    return fn(**kwargs)


def short_name(spec: str, builtin_module: str) -> str:
    """How a target is shown (run summary, dataset name): a built-in by its function's name, others in full."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    return attr if module_name == builtin_module else spec
