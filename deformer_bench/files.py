"""Files appear whole or not at all: write beside the target, then rename over it (atomic on one filesystem)."""

import contextlib
import shutil
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    staging.write_text(text)
    staging.rename(path)


@contextlib.contextmanager
def staged_directory(out_dir: Path):
    """Yield an empty directory beside `out_dir`; renamed to `out_dir` if the block succeeds, else removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
