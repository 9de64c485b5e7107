"""Typed errors. Library code raises these; the CLIs turn them into one message and exit code 2."""


class DeformerBenchError(Exception):
    """An error the user can fix: `message` says what is wrong, `hint` what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelDirError(DeformerBenchError):
    """The model directory is missing, not a model, or its weights do not fit the architecture."""


class UnsupportedArchitectureError(DeformerBenchError):
    """The model family is not in the architecture table."""


class ConfigError(DeformerBenchError):
    """A DeFormer setting (k, lengths, position offset) does not fit the model."""


class OutputExistsError(DeformerBenchError):
    """The output directory exists and --overwrite was not given."""


class ValidationError(DeformerBenchError):
    """An exported graph does not reproduce PyTorch within tolerance."""


class ManifestError(DeformerBenchError):
    """A graph set's manifest is missing, of an unknown version, or does not match its files."""


class ProfileError(DeformerBenchError):
    """A hardware profile is unknown or malformed."""


class DeviceError(DeformerBenchError):
    """An unknown device, or a device this machine cannot run."""


class RunnerError(DeformerBenchError):
    """A benchmark runner process failed."""


class PassageCacheError(DeformerBenchError):
    """A passage cache directory is malformed, of another graph set, or lacks the passages asked for."""
