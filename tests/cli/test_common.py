import errno

import pytest

from deformer_bench.cli.common import parse_int_list, run_cli
from deformer_bench.contracts.errors import EXIT_FAILURE, ConfigError, RunnerError


def raising(error):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize("error, code, words", [
    (ConfigError("bad k", "choose k"), 2, ["error: bad k", "fix: choose k"]),
    (RunnerError("runner crashed", "check onnxruntime"), 3, ["error: runner crashed"]),
    (OSError(errno.ENOSPC, "No space left on device", "/out/x.onnx"), 3, ["disk is full", "/out/x.onnx"]),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out"), 2, ["cannot write /ro/out"]),
    (KeyboardInterrupt(), 130, ["interrupted"]),
])
def test_errors_become_one_message_and_their_exit_code(capsys, error, code, words):
    assert run_cli(raising(error), []) == code
    err = capsys.readouterr().err
    assert all(word in err for word in words) and "Traceback" not in err


@pytest.mark.parametrize("text, message", [("", "is empty"), (" , ", "is empty"), ("1,x", "comma-separated"),
                                           ("0,1", "at least 1")])
def test_int_lists_blame_the_option(text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        parse_int_list(text, "batch-sizes", minimum=1)
    assert "--batch-sizes" in raised.value.message


def test_sigterm_cleans_up_as_ctrl_c_does():
    import os
    import signal

    from deformer_bench.cli.common import EXIT_INTERRUPTED, run_cli

    cleaned = []

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            cleaned.append(True)

    assert run_cli(main) == EXIT_INTERRUPTED and cleaned == [True]


def test_a_reader_that_goes_away_is_not_an_error_message(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert run_cli(main, []) == EXIT_FAILURE
    assert capsys.readouterr().err == ""
