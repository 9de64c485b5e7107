"""What every API function checks the same way: outputs before any work, counts within bounds, and an interrupt
that names the unfinished passage cache it leaves."""

import dataclasses
from contextlib import contextmanager
from pathlib import Path

from ..contracts.errors import ConfigError, Interrupted, PassageCacheError
from ..files import check_distinct_paths, check_output_dir, check_output_file
from ..passage_cache.store import RECORD_FILE, read_record


class PathFields:
    """A request dataclass whose fields annotated Path take a string too: each becomes a Path once the request is
    made (None stays None: not given)."""

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type is Path and value is not None:
                setattr(self, item.name, Path(value))


def check_outputs(files: dict, passage_cache, inputs: dict) -> None:
    """Before any work: every output file (`{option: path}`, None skipped) can be written, a passage cache that
    does not exist yet can be created there, and no output, the passage cache included (an existing one is
    read, and may be written: a resumed build), is, holds or lies inside an input (`{what: path}`) or overlaps
    another output (files.check_distinct_paths)."""
    for option, path in files.items():
        if path is not None:
            check_output_file(path, option)
    if passage_cache is not None and not (passage_cache.exists() or passage_cache.is_symlink()):
        check_output_dir(passage_cache, "--passage-cache")
    check_distinct_paths({**files, "--passage-cache": passage_cache}, inputs)


@contextmanager
def interrupts_name_an_unfinished_cache(passage_cache):
    """deformer-answer and deformer-eval remove a passage cache they started if they are interrupted (nothing was
    written), but one they went on with (an unfinished build of the same passages) keeps what it had and what
    they added: an interrupt then says so, instead of "nothing was written"."""
    unfinished = passage_cache is not None and is_unfinished_cache(passage_cache)
    try:
        yield
    except KeyboardInterrupt as interruption:
        if unfinished and not isinstance(interruption, Interrupted):
            raise Interrupted(f"interrupted: no answers or scores were written; the unfinished passage cache "
                              f"{passage_cache} keeps the segments it had and any this run finished, and the same "
                              "command goes on from there") from None
        raise


def is_unfinished_cache(directory) -> bool:
    """True for a passage cache whose build was started and not finished (False for anything else: whatever is
    wrong with it is said when it is opened)."""
    if not (directory / RECORD_FILE).is_file():
        return False
    try:
        return not read_record(directory)["complete"]
    except (PassageCacheError, OSError):
        return False




def check_count(option: str, value, maximum: int) -> None:
    """A count option (None: not given) from 1 to `maximum`, else a ConfigError naming it."""
    if value is not None and value < 1:
        raise ConfigError(f"{option} must be at least 1, got {value}", f"e.g. {option} 64")
    if value is not None and value > maximum:
        raise ConfigError(f"{option} must be at most {maximum:,}, got {value:,}",
                          f"give {option} a count a run can hold (at most {maximum:,})")
