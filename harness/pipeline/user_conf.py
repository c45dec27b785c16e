"""A user's own config directories on Hydra's search path, after harness's built-in configs.

`conf/config.yaml` sets `hydra.searchpath: ${harness_user_conf:}`; the resolver gives, in this order, each
directory of `$HARNESS_CONF` (one or more, separated by `os.pathsep`; each must exist) and `./conf` of the working
directory when there is one (not when it is harness's own conf/, as in the checkout). Their files add options to
the groups (`conf/circuit/my_signals.yaml` -> `circuit=my_signals`, `conf/experiment/mine.yaml` ->
`+experiment=mine`); a file with the name of a built-in option is shadowed by the built-in one. A command line
`hydra.searchpath=[...]` replaces the list (Hydra's rule).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from harness import package_data
from harness.pipeline.targets import ConfigError

ENV = "HARNESS_CONF"
RESOLVER = "harness_user_conf"
CWD_CONF = "conf"


def user_conf_dirs(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The user's config directories, absolute: `$HARNESS_CONF`'s, then `<cwd>/conf` if it is a directory."""
    cwd = Path.cwd() if cwd is None else cwd
    environ = os.environ if environ is None else environ
    builtin = package_data.layout().conf.resolve()
    out: list[Path] = []
    for entry in filter(None, environ.get(ENV, "").split(os.pathsep)):
        path = (cwd / entry).resolve()
        if not path.is_dir():
            raise ConfigError(f"{ENV}={environ[ENV]}: {path} is not a directory (it names your config directories)")
        out.append(path)
    local = (cwd / CWD_CONF).resolve()
    if local.is_dir():
        out.append(local)
    return list(dict.fromkeys(p for p in out if p != builtin))


def search_path() -> list[str]:
    """`hydra.searchpath` entries for the user's config directories (`file://` URLs)."""
    return [f"file://{path.as_posix()}" for path in user_conf_dirs()]


def register_resolver() -> None:
    """Register `${harness_user_conf:}` with OmegaConf (idempotent; not cached: the working directory may change)."""
    OmegaConf.register_new_resolver(RESOLVER, search_path, replace=True)
