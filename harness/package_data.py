"""Where harness's data files are, in either layout: the Hydra configs, the named experiments and the C++ runtime
headers that generated kernels include.

In the source tree they are `conf/`, `experiments/` and `cpp/harness/` (one copy each, in git); an editable
install (`pip install -e .`) reads them there, so an edit takes effect at once. A wheel carries them inside the
package (CMakeLists.txt installs them): `harness/conf/` (a package, so that Hydra reads it as `pkg://harness.conf`),
`harness/experiments/` and `harness/include/harness/`. The package's own copy wins when both exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

PACKAGE = Path(__file__).resolve().parent
CONF_PACKAGE = "harness.conf"  # the configs inside an installed package, as Hydra names them: pkg://harness.conf


@dataclass(frozen=True)
class Layout:
    """The data directories of one installation, and the source checkout they come from (None: a wheel)."""

    conf: Path
    experiments: Path
    include: Path  # holds harness/*.hpp
    checkout: Path | None

    @property
    def installed(self) -> bool:
        """Whether the data is inside the installed package (a wheel), not in a source checkout."""
        return self.checkout is None

    @property
    def primary_config_path(self) -> str:
        """What `hydra.main(config_path=...)` takes: `pkg://harness.conf` in a wheel, the checkout's conf/ else."""
        return f"pkg://{CONF_PACKAGE}" if self.installed else str(self.conf)


def layout(package: Path = PACKAGE) -> Layout:
    """The layout `package` (the harness package directory) is installed in; HarnessError when neither is whole."""
    if (package / "conf" / "config.yaml").is_file():
        return Layout(package / "conf", package / "experiments", package / "include", checkout=None)
    root = package.parent
    if (root / "conf" / "config.yaml").is_file() and (root / "cpp" / "harness").is_dir():
        return Layout(root / "conf", root / "experiments", root / "cpp", checkout=root)
    raise HarnessError(
        f"harness's configs are neither inside the package ({package / 'conf'}) nor in a source checkout "
        f"({root / 'conf'}): a broken installation; reinstall harness (pip install harness-*.whl, or pip install -e .)"
    )
