"""The files a reader is given: one path, a glob or a list of them, wherever a list of files is taken.

`expand` is the one place globs are expanded: the tardis and Binance readers (`csvread.as_paths`), the
catalog's `import_files` (`hs.data.import_files`, `harness data import`) and the pipeline's file keys
(`harness.pipeline.loaders.files`). A glob (`*`, `?`, `[`) expands to the files it matches, sorted (`**`
matches folders at any depth); a glob that matches no file is a `DataError` naming the pattern. A path that
exists as written is taken as written, even when its name holds one of those characters.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from harness.errors import DataError

GLOB_CHARS = "*?["
Path_ = str | PathLike[str]


def is_glob(path: Path_) -> bool:
    """Whether `path` is a pattern to expand: it holds a glob character and no such file exists as written."""
    text = str(path)
    return any(c in text for c in GLOB_CHARS) and not Path(text).exists()


def expand(paths: Path_ | Sequence[Path_], *, must_exist: bool = False) -> list[Path]:
    """`paths` (one path, a glob or a list of them) as the files they name, in order, each glob's sorted.

    A glob that matches no file, an empty list and (with `must_exist`) a path that is not there are a
    `DataError` naming them and the working directory (relative paths are taken from it)."""
    items = [paths] if isinstance(paths, str | PathLike) else list(paths)
    if not items:
        raise DataError("an empty list of files was given")
    out: list[Path] = []
    for item in items:
        if is_glob(item):
            matches = sorted(m for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matches:
                raise DataError(f"no file matches {str(item)!r} (working directory {Path.cwd()})")
            out += [Path(m) for m in matches]
        elif must_exist and not Path(item).exists():
            raise DataError(f"data file {str(item)!r} does not exist (working directory {Path.cwd()})")
        else:
            out.append(Path(item))
    return out
