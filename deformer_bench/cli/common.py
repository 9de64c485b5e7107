"""What every CLI shares: typed errors become one message and an exit code (errors.py), never a traceback."""

import argparse
import errno
import os
import signal
import sys
import threading

from . import restore_interrupt_handler
from ..contracts.errors import (DISK_FULL_ERRNOS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, ConfigError,
                                DeformerBenchError, Interrupted, InterruptedMidTest)

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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's own errors (an unknown option, a choice not offered, a value past its bound) as every other error
    of a command: one `error:` line and one `fix:` line, exit 2, not the usage block and `prog: error: ...`.
    Subcommands' parsers (deformer-cache build) are of this class too: argparse makes them of their parent's."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message}\n  fix: see {self.prog} --help\n")


def run_cli(main_function, argv=None, interrupted: str = NOTHING_WRITTEN) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
        restore_interrupt_handler()
    try:
        return main_function(argv) or 0
    except Exception as error:
        interruption = _interrupt_in_chain(error)
        if interruption is None:
            return _report(error)
        return _interrupted(interruption, interrupted)
    except KeyboardInterrupt as interruption:
        return _interrupted(interruption, interruption.left if isinstance(interruption, Interrupted) else interrupted)


def _interrupted(interruption: KeyboardInterrupt, message: str) -> int:
    print(message, file=sys.stderr)
    if isinstance(interruption, InterruptedMidTest):  # a test's threads still run: no Python shutdown after it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED


def _interrupt_in_chain(error: BaseException):
    """The KeyboardInterrupt (Ctrl-C, SIGTERM) in `error`'s chain, or None: a library that catches it mid-call
    raises its own error instead (Ctrl-C during `import onnxruntime` is "ImportError: initialization failed", which
    a graph set's loader then reported as a damaged graph set to export again, exit 2)."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return None


def _report(error: Exception) -> int:
    """The one error: and fix: lines of a failure, and its exit code; an error of no known kind (a bug) is raised."""
    try:
        raise error
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


def parse_int_list(text: str, what: str, minimum: int = None) -> list:
    """'1,2,3' -> [1, 2, 3]; an empty list, a non-integer or a value below `minimum` is a ConfigError that
    names the option (--what), not the profile it would override."""
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
