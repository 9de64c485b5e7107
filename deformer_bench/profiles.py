"""Hardware profiles: YAML files in profiles/ turned into a validated dataclass (unknown keys are errors)."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ProfileError

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


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
    seed: int = 0
    source: str = field(default="", compare=False)

    def __post_init__(self):
        positive_ints = ("intra_op_threads", "inter_op_threads", "question_len", "passage_len",
                         "warmup_min_count", "min_count", "memory_iterations")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProfileError(f"profile {self.name!r}: {name} must be a positive integer, got {value!r}",
                                   f"fix {name} in the profile")
        for name in ("warmup_min_time_s", "min_time_s", "max_time_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ProfileError(f"profile {self.name!r}: {name} must be a number >= 0, got {value!r}",
                                   f"fix {name} in the profile")
        if self.max_time_s < self.min_time_s:
            raise ProfileError(f"profile {self.name!r}: max_time_s < min_time_s", "raise max_time_s")
        if (not isinstance(self.batch_sizes, (list, tuple)) or not self.batch_sizes
                or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1
                           for size in self.batch_sizes)):
            raise ProfileError(f"profile {self.name!r}: batch_sizes must be a list of positive integers",
                               "e.g. batch_sizes: [1, 8, 32]")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ProfileError(f"profile {self.name!r}: graph_optimization {self.graph_optimization!r} is unknown",
                               f"use one of: {', '.join(GRAPH_OPTIMIZATIONS)}")
        if not isinstance(self.allow_spinning, bool):
            raise ProfileError(f"profile {self.name!r}: allow_spinning must be true or false", "fix allow_spinning")

    def quick(self) -> "Profile":
        """A smoke-test version: one small batch, few samples. Its figures are not results."""
        return dataclasses.replace(self, name=f"{self.name}+quick", batch_sizes=(self.batch_sizes[0],),
                                   warmup_min_count=1, warmup_min_time_s=0.0, min_count=3, min_time_s=0.0,
                                   max_time_s=30.0, memory_iterations=2)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "batch_sizes": list(self.batch_sizes)}


def available_profiles() -> list:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (profiles/NAME.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name_or_path!r}",
                           f"use one of: {', '.join(available_profiles())}, or the path of a YAML profile")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ProfileError(f"profile {path} is not valid YAML: {error}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must be a mapping of settings", "see profiles/server-cpu.yaml")
    known = {f.name for f in dataclasses.fields(Profile)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"profile {path} has unknown keys: {', '.join(unknown)}",
                           f"known keys: {', '.join(sorted(known))}")
    missing = sorted(name for name in ("name", "description", "device", "intra_op_threads", "batch_sizes")
                     if name not in data)
    if missing:
        raise ProfileError(f"profile {path} lacks required keys: {', '.join(missing)}", "add them")
    data["batch_sizes"] = tuple(data["batch_sizes"]) if isinstance(data["batch_sizes"], list) else data["batch_sizes"]
    return Profile(**data, source=str(path))
