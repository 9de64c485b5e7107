"""Files appear whole or not at all: write beside the target, then rename over it (atomic on one filesystem)."""

from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    staging.write_text(text)
    staging.rename(path)
