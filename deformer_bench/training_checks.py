"""What a training run checks before it starts and while it saves: nothing of the user's harmed, nothing
reused that was trained otherwise, a full disk reported as such.

    check_run_directory   the output may not be, hold or lie inside what the run reads, nor a folder of other files
    check_finished_run    a finished run (DONE) is reused only with the settings it was trained with
    differing_settings    the settings two runs differ in (paths aside), for a finished run or a committed record
    check_room_to_train   room for checkpoints and the model, checked before the first step
    saving                a full disk while saving is one DiskFullError, whatever torch or safetensors raised
"""

import contextlib
import dataclasses
import shutil
import sys
from pathlib import Path

import torch

from .contracts.errors import DISK_FULL_ERRNOS, ConfigError, DiskFullError, OutputLocationError
from .contracts.readers import FormatError, read_json
from .files import check_distinct_paths, check_output_dir

MODEL_DIR = "model"
DONE_FILE = "DONE"
UNCOMPARED = ("checkpoint_every", "output_dir", "init_dir", "teacher_dir", "train_file", "device")


def is_disk_full(error: Exception, directory: Path) -> bool:
    """torch.save and safetensors report a full disk as RuntimeError / SafetensorError, not OSError(ENOSPC)."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    try:
        return "No space left" in str(error) or shutil.disk_usage(directory).free < 2**20
    except OSError:
        return False


@contextlib.contextmanager
def saving(directory: Path, what: str):
    """A full disk while saving `what` is one DiskFullError (exit 3), whatever the library raised."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if is_disk_full(error, directory):
            raise DiskFullError(f"the disk filled up while saving the {what} in {directory}",
                                "free space and run the same command again: it resumes from the last "
                                "checkpoint") from None
        raise


def check_run_directory(config, inputs: dict = None) -> None:
    """Refuse an output directory a run could harm: one that is, holds or lies inside what the run reads (the
    model it starts from, its teacher, its training file, and `inputs`, {what: path}, such as a queue's file and
    evaluation set: files.check_distinct_paths; the run writes OUT/model and removes OUT/checkpoint), or an
    existing folder that is not a training run (its files are not ours)."""
    reads = {"its init model": config.init_dir, "its teacher model": config.teacher_dir or None,
             "its training file": config.train_file, **(inputs or {})}
    check_distinct_paths({"the run's output": config.output_dir}, reads)
    output = Path(config.output_dir).resolve()
    if output.is_file():
        raise OutputLocationError(f"the run's output {config.output_dir} is a file", "give a directory path")
    check_output_dir(output, "the run's output")  # a file on the way, a read-only disk: now, not after featurizing
    if output.is_dir() and any(output.iterdir()) and not (output / "train_config.json").is_file():
        raise OutputLocationError(f"{config.output_dir} holds files but is not a training run (no train_config.json)",
                                  "give a new --output directory (an interrupted run is resumed from its own)")


def differing_settings(saved: dict, config) -> list:
    """The settings that shape the model and differ between a recorded run's config (a train_config.json's
    "config") and `config`. Paths may differ (another checkout, venv or runs-dir spelling); a setting the record
    lacks (written before it existed) counts as its default."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    mine = dataclasses.asdict(config)
    return sorted(key for key in mine if key not in UNCOMPARED and saved.get(key, defaults[key]) != mine[key])


def check_finished_run(output: Path, config) -> None:
    """A finished run is reused only if it was trained with these settings: a DONE file proves nothing alone."""
    path = output / "train_config.json"
    try:
        saved = read_json(path, "training record")["config"]
    except (FormatError, KeyError, TypeError) as error:
        raise OutputLocationError(f"{output} holds a DONE file but no readable train_config.json ({error}): it is "
                                  "not a finished run of deformer-train", "give a new --output directory") from None
    differing = differing_settings(saved, config)
    if differing:
        raise ConfigError(f"{output} is a finished run of other settings ({', '.join(differing)} differ); it would be "
                          "reused as if it were this one", "give a new --output directory, or its own settings")
    if not (output / MODEL_DIR / "config.json").is_file():
        raise OutputLocationError(f"{output} is marked finished but holds no model", f"remove {output / DONE_FILE} "
                                  "to train it again")


def ensure_room(directory: Path, needed_bytes: int, what: str) -> None:
    """Before a save: torch and safetensors report a full disk as an opaque RuntimeError (e.g. "unexpected pos
    704 vs 598"), and by then the staging copy is gone; so the room is checked first."""
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise DiskFullError(f"saving the {what} needs about {needed_bytes / 2**20:,.0f} MiB and {directory} has "
                            f"{free / 2**20:,.0f} MiB free", "free space and run the same command again: it resumes "
                            "from the last checkpoint")


def check_room_to_train(config) -> None:
    """Checkpoints (weights + two AdamW moments), the previous one kept until the new one is whole, and the
    final model: about 7 copies of the weights. Refused up front rather than lost at the first save."""
    output = Path(config.output_dir)
    init_weights = sum(path.stat().st_size for path in Path(config.init_dir).glob("*.safetensors")) \
        or sum(path.stat().st_size for path in Path(config.init_dir).glob("*.bin"))
    parent = next(folder for folder in (output, *output.parents) if folder.exists())
    needed, free = 7 * init_weights, shutil.disk_usage(parent).free
    if init_weights and free < needed:
        raise DiskFullError(f"training needs about {needed / 2**20:,.0f} MiB for checkpoints and the model and "
                            f"{parent} has {free / 2**20:,.0f} MiB free", "free space or give --output on another disk")


def warn_if_bf16_is_slow(config) -> None:
    """bf16 autocast needs AVX-512 on x86: on an AVX2-only CPU (AMD EPYC Zen 2) one MiniLM step took 110 s in
    bf16 against 8.4 s in fp32 (batch 32, 32 + 224 tokens, 2 threads)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if config.bf16 and capability in ("DEFAULT", "AVX2", "ZVECTOR"):
        print(f"warning: bf16 is on but this CPU's vector unit is {capability}: bf16 runs emulated, ~13x slower "
              "than fp32 on MiniLM here; set bf16: false (--bf16 false) unless the CPU has AVX-512 or AMX",
              file=sys.stderr)
