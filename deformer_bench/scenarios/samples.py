"""The query samples: SQuAD v1.1 questions, each with its passage (the dataset deformer-eval reads)."""

import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..squad.data import DatasetError, load_squad

# LoadGen holds every sample in memory (performance_sample_count is the samples chosen): a million questions is
# more than ten times SQuAD v1.1's training set.
MAX_SAMPLES = 1_000_000
MAX_SEED = 2**32 - 1  # as a training run's seed (train.MAX_SEED)


@dataclass(frozen=True)
class SampleSet:
    """The questions LoadGen's query sample library holds: sample index i is examples[i]."""

    examples: tuple
    dataset: str
    dataset_questions: int  # questions in the whole file
    limit: int | None
    seed: int

    def __len__(self) -> int:
        return len(self.examples)

    def record(self) -> dict:
        return {"dataset": self.dataset, "dataset_questions": self.dataset_questions, "samples": len(self),
                "limit": self.limit, "seed": self.seed, "passages": len({e.context for e in self.examples})}


def choose_samples(dataset, limit: int = None, seed: int = 0) -> SampleSet:
    """Every question of `dataset`, or `limit` of them drawn with `seed` (kept in file order). A question whose
    passage has no text is refused: the dataset lacks the passages a query reads."""
    check_draw(limit, seed)
    path = Path(dataset)
    examples = load_squad(path)
    if limit is not None and limit > len(examples):
        raise DatasetError(f"--limit {limit} is more than the {len(examples):,} questions of {path}",
                           f"give --limit {len(examples)} or less, or leave it out for every question")
    chosen = examples if limit is None else [examples[i] for i in sorted(random.Random(seed).sample(
        range(len(examples)), limit))]
    empty = [example.id for example in chosen if not example.context.strip()]
    if empty:
        raise DatasetError(f"dataset {path}: {len(empty)} question(s) have no passage text (first: {empty[0]!r}); "
                           "a query reads its passage", "give a SQuAD v1.1 file whose paragraphs hold their context")
    return SampleSet(tuple(chosen), str(path), len(examples), limit, seed)


def check_draw(limit, seed) -> None:
    """--limit (None: every question) from 1 to MAX_SAMPLES and --seed from 0 to MAX_SEED, whole numbers."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if limit is not None and not (whole(limit) and 1 <= limit <= MAX_SAMPLES):
        raise ConfigError(f"--limit must be a whole number of questions from 1 to {MAX_SAMPLES:,}, got {limit!r}",
                          "give a smaller --limit, or leave it out for every question")
    if not (whole(seed) and 0 <= seed <= MAX_SEED):
        raise ConfigError(f"--seed must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}", "e.g. --seed 0")
