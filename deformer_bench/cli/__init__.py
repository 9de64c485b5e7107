"""The command-line tools. Importing this package from a console script (deformer-export, -bench, -eval, -answer,
-train, -cache) makes Ctrl-C while the command still imports its libraries (torch, transformers, onnxruntime:
seconds) one "interrupted" line and exit 130, as it is once the command runs (cli.common.run_cli), instead of
Python's KeyboardInterrupt traceback out of an import: nothing has been read or written by then."""

import os
import signal
import sys
import threading


def _interrupted_while_starting(signal_number, frame):
    sys.stderr.write("interrupted: nothing was written\n")
    sys.stderr.flush()
    os._exit(130)  # mid-import: no cleanup of ours is due, and unwinding would print the import's traceback


def _is_console_script() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]).startswith("deformer-")


if (_is_console_script() and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _interrupted_while_starting)


def restore_interrupt_handler() -> None:
    """Once a command runs, Ctrl-C is Python's KeyboardInterrupt again, which run_cli turns into its cleanup."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
