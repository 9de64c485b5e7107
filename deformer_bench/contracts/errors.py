"""Typed errors. Library code raises these; the CLIs turn them into one message and an exit code.

Exit codes (cli.common.run_cli, documented in the README):
  2  the input or the settings: a bad argument, file, model, graph set or output location; fix and rerun
  3  the work itself failed: a runner process crashed or timed out, exported graphs did not validate,
     the disk filled up while writing; nothing half-written is left behind
  130 interrupted (Ctrl-C)
"""

import errno

EXIT_USAGE = 2
EXIT_FAILURE = 3
EXIT_INTERRUPTED = 130
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left, quota reached


def first_line(error: Exception) -> str:
    """The first line of a library's error message (transformers' and torch's can run to pages), at most 300
    characters; the exception's type name when it has no message."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:300] + " ..."  # transformers lists every model type it knows


class DeformerBenchError(Exception):
    """An error the user can fix: `message` says what is wrong, `hint` what to do about it."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RuntimeFailure(DeformerBenchError):
    """The work failed while running, through no fault of the input (exit code 3)."""

    exit_code = EXIT_FAILURE


class ModelDirError(DeformerBenchError):
    """The model directory is missing, not a model, or its weights do not fit the architecture."""


class UnsupportedArchitectureError(DeformerBenchError):
    """The model family is not in the architecture table."""


class ConfigError(DeformerBenchError):
    """A DeFormer setting (k, lengths, position offset) does not fit the model."""


class OutputExistsError(DeformerBenchError):
    """The output directory exists and --overwrite was not given."""


class OutputLocationError(DeformerBenchError):
    """An output path cannot be written: a file where a folder goes, a read-only folder, the model itself."""


class ValidationError(RuntimeFailure):
    """An exported graph does not reproduce PyTorch within tolerance."""


class ManifestError(DeformerBenchError):
    """A graph set's manifest is missing, of an unknown version, or does not match its files."""


class ProfileError(DeformerBenchError):
    """A hardware profile is unknown or malformed."""


class DeviceError(DeformerBenchError):
    """An unknown device, or a device this machine cannot run."""


class ExportError(RuntimeFailure):
    """The ONNX exporter failed on a graph (an operator it cannot export at this opset, ...)."""


class TargetError(DeformerBenchError):
    """A device's target cannot be used: an unreachable or refusing host, a missing emulator or Python."""


class RunnerError(RuntimeFailure):
    """A benchmark runner process failed."""


class DiskFullError(RuntimeFailure):
    """The disk filled up (or a quota was reached) while writing."""


class PassageCacheError(DeformerBenchError):
    """A passage cache directory is malformed, of another graph set, or lacks the passages asked for."""


class InterruptedMidTest(KeyboardInterrupt):
    """An interrupt (Ctrl-C, SIGTERM) that came while a test that cannot be stopped (LoadGen's) still runs in its
    own threads: once the usual cleanup has run, run_cli ends the process at once (os._exit), since Python's shutdown
    would tear down the objects those threads use (an abort or a segmentation fault)."""


class Interrupted(KeyboardInterrupt):
    """An interrupt (Ctrl-C, SIGTERM) re-raised with what the interrupted command left behind: run_cli prints
    `left` instead of the command's usual interrupted line."""

    def __init__(self, left: str):
        super().__init__(left)
        self.left = left
