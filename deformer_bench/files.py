"""Files appear whole or not at all: write beside the target, then rename over it (atomic on one filesystem)."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    staging.write_text(text)
    staging.rename(path)


def save_figure_atomically(figure, path: Path) -> None:
    """A matplotlib figure saved as PNG beside `path`, then renamed over it."""
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    figure.savefig(staging, dpi=110, format="png")
    staging.rename(path)


@contextlib.contextmanager
def staged_directory(out_dir: Path, replace: bool = False):
    """Yield an empty directory beside `out_dir`; renamed to `out_dir` if the block succeeds, else removed.

    With `replace`, an existing `out_dir` is moved aside first and removed only once the new one is in place,
    so a failure at any point leaves either the old directory or the new one, never a mix.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        if replace and out_dir.exists():
            aside = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
            out_dir.rename(aside)
            staging.rename(out_dir)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
