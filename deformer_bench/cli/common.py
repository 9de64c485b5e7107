"""What every CLI shares: typed errors become one message and an exit code (errors.py), never a traceback."""

import errno
import sys
from contextlib import contextmanager

from ..errors import DISK_FULL_ERRNOS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, DeformerBenchError, Interrupted

# What an interrupted command leaves behind; commands that keep partial work (training) say so.
NOTHING_WRITTEN = "interrupted: nothing was written"


def os_error_message(error: OSError) -> tuple:
    """(message, hint, exit code) for a file-system error no check caught earlier."""
    where = error.filename if error.filename is not None else "a file"
    reason = error.strerror or str(error)
    if error.errno in DISK_FULL_ERRNOS:
        return (f"the disk is full writing {where}: {reason}",
                "free space or write to another disk; nothing half-written was kept", EXIT_FAILURE)
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where}: {reason}", "choose a location you can write to", EXIT_USAGE
    return f"{where}: {reason}", "check the path", EXIT_USAGE


def _terminated(signal_number, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, a job scheduler) cleans up as Ctrl-C does


def run_cli(main_function, argv=None, interrupted: str = NOTHING_WRITTEN) -> int:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    try:
        return main_function(argv) or 0
    except DeformerBenchError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"  fix: {error.hint}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:  # the reader went away (`deformer-cache info | head`): nothing to say to it
        import os

        try:  # standard output to /dev/null, so that Python's flush at exit cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # no real file behind sys.stdout
            pass
        return EXIT_FAILURE
    except OSError as error:  # a file-system failure no earlier check caught (full or read-only disk, ...)
        message, hint, code = os_error_message(error)
        print(f"error: {message}", file=sys.stderr)
        print(f"  fix: {hint}", file=sys.stderr)
        return code
    except KeyboardInterrupt as interruption:
        print(interruption.left if isinstance(interruption, Interrupted) else interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED


def check_outputs(files: dict, passage_cache, inputs: dict) -> None:
    """Before any work: every output file (`{option: path}`, None skipped) can be written, a passage cache that
    does not exist yet can be created there, and no output, the passage cache included (an existing one is
    read, and may be written: a resumed build), is, holds or lies inside an input (`{what: path}`) or overlaps
    another output (files.check_distinct_paths)."""
    from ..files import check_distinct_paths, check_output_dir, check_output_file

    for option, path in files.items():
        if path is not None:
            check_output_file(path, option)
    if passage_cache is not None and not (passage_cache.exists() or passage_cache.is_symlink()):
        check_output_dir(passage_cache, "--passage-cache")
    check_distinct_paths({**files, "--passage-cache": passage_cache}, inputs)


def tokenizer_input(graphs, tokenizer) -> dict:
    """{what: path} of the tokenizer folder a command over a graph set reads: --tokenizer, else the model folder
    the graphs were exported from (its manifest's source), which is as much an input as a named one."""
    if tokenizer is not None:
        return {"the tokenizer directory": tokenizer}
    from exporters.manifest import graph_set_source

    source = graph_set_source(graphs)
    return {f"the tokenizer directory {{}} (the model {graphs} was exported from)": source} if source else {}


def parse_int_list(text: str, what: str, minimum: int = None) -> list:
    """'1,2,3' -> [1, 2, 3]; an empty list, a non-integer or a value below `minimum` is a ConfigError that
    names the option (--what), not the profile it would override."""
    from ..errors import ConfigError

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--{what} must be comma-separated integers, got {text!r}",
                          f"e.g. --{what} 1,2,3") from None
    if not values:
        raise ConfigError(f"--{what} is empty", f"e.g. --{what} 1,2,3, or leave the option out")
    if minimum is not None and min(values) < minimum:
        raise ConfigError(f"--{what} must be at least {minimum}, got {text!r}", f"e.g. --{what} 1,2,3")
    return values


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse itself then reports a bad value with exit code 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def command_line(*words) -> str:
    """A command a user can paste into a shell from any directory: paths made absolute, words quoted as needed.
    Path words are given as pathlib.Path; None words are left out."""
    import os
    import shlex
    from pathlib import Path

    return shlex.join(os.path.abspath(word) if isinstance(word, Path) else str(word)
                      for word in words if word is not None)


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
    from ..errors import PassageCacheError
    from ..passage_cache.store import RECORD_FILE, read_record

    if not (directory / RECORD_FILE).is_file():
        return False
    try:
        return not read_record(directory)["complete"]
    except (PassageCacheError, OSError):
        return False


# Windows run through a graph at once: 65,536 of 224 x 384 float32 states are 22 GB per layer's output.
MAX_BATCH_SIZE = 65_536


def check_count(option: str, value, maximum: int) -> None:
    """A count option (None: not given) from 1 to `maximum`, else a ConfigError naming it."""
    from ..errors import ConfigError

    if value is not None and value < 1:
        raise ConfigError(f"{option} must be at least 1, got {value}", f"e.g. {option} 64")
    if value is not None and value > maximum:
        raise ConfigError(f"{option} must be at most {maximum:,}, got {value:,}",
                          f"give {option} a count a run can hold (at most {maximum:,})")


def int_up_to(maximum: int, why: str, minimum: int = 1):
    """argparse type: an integer from `minimum` (1: a count; 0: e.g. a seed) to `maximum`; above it, the message
    says `why` there is a bound (a count of processes or repeats that would run until killed, or overflow what it
    is handed to)."""
    import argparse

    def parse(text: str) -> int:
        if minimum == 1:
            value = positive_int(text)
        else:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
            if value < minimum:
                raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {value:,}: {why}")
        return value

    return parse


def number_up_to(maximum: float, unit: str, why: str, above_zero: bool = False):
    """argparse type: a finite number of `unit` from 0 (`above_zero`: above 0) to `maximum`; NaN and inf are
    refused with the rest."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {text!r}") from None
        if not math.isfinite(value) or not (0 < value if above_zero else 0 <= value) or value > maximum:
            span = f"above 0 and at most {maximum:g}" if above_zero else f"from 0 to {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be a number of {unit} {span}, got {text}: {why}")
        return value

    return parse


def seconds_up_to(maximum: float, why: str, above_zero: bool = False):
    """argparse type: a finite number of seconds from 0 (`above_zero`: above 0) to `maximum`."""
    return number_up_to(maximum, "seconds", why, above_zero)
