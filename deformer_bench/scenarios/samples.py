"""The query samples: SQuAD v1.1 questions, each with its passage (the dataset deformer-eval reads)."""

import random
from dataclasses import dataclass
from pathlib import Path

from ..squad.data import DatasetError, load_squad


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
