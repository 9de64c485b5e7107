"""Hardware profiles: YAML files turned into a validated dataclass (unknown keys are errors).

The built-in profiles live in the repository's top-level profiles/ folder, which setup.cfg installs as the
package deformer_bench.builtin_profiles; they are read through importlib.resources, so they are found the same
way in an editable install and in an installed wheel.
"""

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path

from .bench.devices import DEVICES, check_target_settings
from .contracts.bounds import MAX_BATCH_SIZE
from .contracts.errors import ProfileError, TargetError
from .contracts.manifest import VARIANTS
from .yaml_reader import parse_yaml

BUILTIN_PROFILES_PACKAGE = "deformer_bench.builtin_profiles"
PROFILE_SUFFIXES = (".yaml", ".yml")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
TORCH_DTYPES = ("float32", "float16", "bfloat16")
# Keys a profile no longer takes, and what to write instead.
RETIRED_KEYS = {"graph_dtype": "name the exported variant to measure instead: `variant: float16` (deformer-export "
                               "--fp16 makes it; deformer-bench exports it for a model)"}
REQUIRED_KEYS = ("name", "description", "device", "intra_op_threads", "batch_sizes")
# Bounds on how long and how often a measurement repeats: past them a typo (min_time_s: 1e9, memory_iterations:
# 10**12) runs until killed. An hour per measurement, a hundred thousand repeats.
MAX_TIMED_SECONDS = 3600.0
MAX_REPEATS = 100_000
# The scenarios' batching: at most as many questions in one batch as deformer-cache and deformer-answer take windows
# (contracts.bounds.MAX_BATCH_SIZE), and a wait of at most ten seconds for a batch to fill.
MAX_BATCH_QUESTIONS = MAX_BATCH_SIZE
MAX_BATCH_WAIT_MS = 10_000


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str  # the device this profile is tuned for (cpu, cuda, arm)
    intra_op_threads: int
    batch_sizes: tuple
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization: str = "all"
    question_len: int = 27
    passage_len: int = 293
    warmup_min_count: int = 5
    warmup_min_time_s: float = 1.0
    min_count: int = 30
    min_time_s: float = 5.0
    max_time_s: float = 120.0
    memory_iterations: int = 10
    # The memory-mapped passage cache file the served online path gathers from (MiB, > the CPU's caches).
    served_cache_mb: int = 256
    seed: int = 0
    # Where the device's runner runs (bench/devices.py: transport local/ssh/emulator, python, host, ...).
    target: dict = None
    # ONNX Runtime provider options, as given to the session (e.g. CUDA's use_tf32); what the provider really
    # used is recorded from the session.
    provider_options: dict = None
    # The PyTorch backend's precision (--backend torch): float32, float16 or bfloat16, eager mode.
    torch_dtype: str = "float32"
    # The exported variant this device measures (exporters/variants.py: float16, int8, ...) in place of the float32
    # graphs, e.g. float16 on a GPU; None: the graph sets --variant names (float32 by default).
    variant: str = None
    # The scenarios (deformer-bench --scenario): the most questions answered in one batch (Offline, and the Server's
    # dynamic batching; default: the largest of batch_sizes) and how long the Server waits after a question arrives
    # for others to batch with it.
    max_batch_size: int = None
    batch_wait_ms: float = 4.0
    source: str = field(default="", compare=False)

    # Checked in this order, each error naming its key: what a profile is, its counts, its times and batches, its
    # choices and settings.
    def __post_init__(self):
        self._check_text()
        self._check_counts()
        self._check_times_and_batches()
        self._check_settings()

    def _check_text(self) -> None:
        for name in ("name", "description", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ProfileError(f"profile {self.name!r}: {name} must be a non-empty string, got {value!r}",
                                   f"fix {name} in the profile")

    def _check_counts(self) -> None:
        positive_ints = ("intra_op_threads", "inter_op_threads", "question_len", "passage_len",
                         "warmup_min_count", "min_count", "memory_iterations", "served_cache_mb")
        for name in positive_ints:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ProfileError(f"profile {self.name!r}: {name} must be a positive integer, got {value!r}",
                                   f"fix {name} in the profile")
        # numpy's generators take seeds >= 0; the runner seeds one with it
        if not _is_int(self.seed) or self.seed < 0:
            raise ProfileError(f"profile {self.name!r}: seed must be an integer >= 0, got {self.seed!r}",
                               "fix seed in the profile")
        for name in ("warmup_min_count", "min_count", "memory_iterations"):
            if getattr(self, name) > MAX_REPEATS:
                raise ProfileError(f"profile {self.name!r}: {name} must be at most {MAX_REPEATS:,}, got "
                                   f"{getattr(self, name):,}", f"fix {name} in the profile")

    def _check_times_and_batches(self) -> None:
        for name in ("warmup_min_time_s", "min_time_s", "max_time_s"):
            value = getattr(self, name)
            # NaN passes every comparison and inf never ends a timed loop: both are refused, as is a finite time
            # that would not end either (1e9 s)
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not 0 <= value <= MAX_TIMED_SECONDS):
                raise ProfileError(f"profile {self.name!r}: {name} must be a finite number of seconds from 0 to "
                                   f"{MAX_TIMED_SECONDS:g}, got {value!r}", f"fix {name} in the profile")
        if self.max_batch_size is not None and (not _is_int(self.max_batch_size)
                                                or not 1 <= self.max_batch_size <= MAX_BATCH_QUESTIONS):
            raise ProfileError(f"profile {self.name!r}: max_batch_size must be a whole number of questions from 1 to "
                               f"{MAX_BATCH_QUESTIONS:,}, got {self.max_batch_size!r}",
                               "fix max_batch_size in the profile, or leave it out")
        if (not isinstance(self.batch_wait_ms, (int, float)) or isinstance(self.batch_wait_ms, bool)
                or not math.isfinite(self.batch_wait_ms) or not 0 <= self.batch_wait_ms <= MAX_BATCH_WAIT_MS):
            raise ProfileError(f"profile {self.name!r}: batch_wait_ms must be a number of milliseconds from 0 to "
                               f"{MAX_BATCH_WAIT_MS:,}, got {self.batch_wait_ms!r}", "fix batch_wait_ms in the profile")
        if self.max_time_s < self.min_time_s:
            raise ProfileError(f"profile {self.name!r}: max_time_s < min_time_s", "raise max_time_s")
        if (not isinstance(self.batch_sizes, (list, tuple)) or not self.batch_sizes
                or not all(_is_int(size) and size >= 1 for size in self.batch_sizes)):
            raise ProfileError(f"profile {self.name!r}: batch_sizes must be a list of positive integers, "
                               f"got {self.batch_sizes!r}", "e.g. batch_sizes: [1, 8, 32]")

    def _check_settings(self) -> None:
        self._check_choice("graph_optimization", GRAPH_OPTIMIZATIONS)
        self._check_choice("device", tuple(DEVICES))
        try:
            check_target_settings(self.target, f"profile {self.name!r}")
        except TargetError as error:
            raise ProfileError(error.message, error.hint) from None
        if self.provider_options is not None and (
                not isinstance(self.provider_options, dict)
                or not all(isinstance(key, str) and isinstance(value, (str, int, float)) and not isinstance(value, bool)
                           for key, value in self.provider_options.items())):
            raise ProfileError(f"profile {self.name!r}: provider_options must map names to strings or numbers",
                               "e.g. provider_options: {use_tf32: 0}")
        if self.variant is not None:
            self._check_choice("variant", VARIANTS)
        self._check_choice("torch_dtype", TORCH_DTYPES)
        if not isinstance(self.allow_spinning, bool):
            raise ProfileError(f"profile {self.name!r}: allow_spinning must be true or false", "fix allow_spinning")

    def _check_choice(self, key: str, allowed: tuple) -> None:
        value = getattr(self, key)
        if value not in allowed:
            raise ProfileError(f"profile {self.name!r}: {key} {value!r} is unknown", f"use one of: {', '.join(allowed)}")

    def quick(self) -> "Profile":
        """A smoke-test version: one small batch, few samples. Its figures are not results."""
        return dataclasses.replace(self, name=f"{self.name}+quick", batch_sizes=(self.batch_sizes[0],),
                                   warmup_min_count=1, warmup_min_time_s=0.0, min_count=3, min_time_s=0.0,
                                   max_time_s=30.0, memory_iterations=2, served_cache_mb=4)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "batch_sizes": list(self.batch_sizes)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def builtin_profiles_dir():
    """The folder of the built-in profiles, as an importlib.resources Traversable."""
    try:
        return importlib.resources.files(BUILTIN_PROFILES_PACKAGE)
    except ModuleNotFoundError:
        # an editable install made before the profiles became a package maps only the old package list
        raise ProfileError(f"the built-in profiles (package {BUILTIN_PROFILES_PACKAGE}) are not installed",
                           "reinstall deformer-bench: `pip install -e .` in the repository, "
                           "or `pip install --force-reinstall --no-deps` the wheel") from None


def available_profiles() -> list:
    """Names of the built-in profiles (what --profile takes besides a path)."""
    return sorted(entry.name[:-len(".yaml")] for entry in builtin_profiles_dir().iterdir()
                  if entry.name.endswith(".yaml") and entry.is_file())


def _example_profile() -> str:
    return str(builtin_profiles_dir() / "server-cpu.yaml")


def _read_profile_bytes(name_or_path: str):
    """(bytes, source) of a built-in profile by name or of a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in PROFILE_SUFFIXES:
        names = available_profiles()
        if name_or_path not in names:
            raise ProfileError(f"unknown profile {name_or_path!r}",
                               f"use one of: {', '.join(names)}, or the path of a YAML profile (.yaml or .yml)")
        resource = builtin_profiles_dir() / f"{name_or_path}.yaml"
        source, read = str(resource), resource.read_bytes
    else:
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError as error:  # e.g. a name too long for the file system
            raise ProfileError(f"cannot read profile {path}: {error.strerror or error}", "check the path") from None
        if is_dir:
            raise ProfileError(f"profile {path} is a directory, not a YAML file", "give the path of a YAML file")
        if not is_file:
            raise ProfileError(f"profile file {path} does not exist",
                               f"check the path, or give a built-in profile by name (without {path.suffix}): "
                               f"{', '.join(available_profiles())}")
        source, read = str(path), path.read_bytes
    try:
        return read(), source
    except OSError as error:
        raise ProfileError(f"cannot read profile {source}: {error.strerror or error}",
                           "check the file's permissions") from None


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (see available_profiles) or a profile by path to a .yaml/.yml file."""
    raw, source = _read_profile_bytes(name_or_path)
    data = parse_yaml(raw, f"profile {source}", ProfileError, name=source)
    if data is None:
        raise ProfileError(f"profile {source} is empty", f"write its settings; see {_example_profile()}")
    if not isinstance(data, dict):
        raise ProfileError(f"profile {source} must be a mapping of settings, not a {type(data).__name__}",
                           f"see {_example_profile()}")
    known = {f.name for f in dataclasses.fields(Profile)} - {"source"}
    retired = [key for key in RETIRED_KEYS if key in data]
    if retired:
        raise ProfileError(f"profile {source}: {retired[0]} is no longer a profile key", RETIRED_KEYS[retired[0]])
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ProfileError(f"profile {source} has unknown keys: {', '.join(unknown)}",
                           f"known keys: {', '.join(sorted(known))}")
    missing = [name for name in REQUIRED_KEYS if name not in data]
    if missing:
        raise ProfileError(f"profile {source} lacks required keys: {', '.join(missing)}", "add them")
    if isinstance(data["batch_sizes"], list):
        data["batch_sizes"] = tuple(data["batch_sizes"])
    return Profile(**data, source=source)
