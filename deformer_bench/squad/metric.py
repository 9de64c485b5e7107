"""The official SQuAD v1.1 metric, written here: normalise, exact match, token F1, max over gold answers."""

import re
import string
import sys
from collections import Counter

PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (in that order)."""
    text = text.lower()
    text = "".join(character for character in text if character not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def token_f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(predicted_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def evaluate(examples, predictions: dict, warn=None) -> dict:
    """{"exact_match": ..., "f1": ...} over every question of `examples`, as the official script.

    A question without a prediction scores 0 (the official script warns once per question; we count
    them and report the count once through `warn`); predictions for unknown ids are ignored and counted.
    """
    total, exact_total, f1_total, missing = 0, 0.0, 0.0, 0
    known = set()
    for example in examples:
        total += 1
        known.add(example.id)
        if example.id not in predictions:
            missing += 1
            continue
        golds = [answer.text for answer in example.answers]
        prediction = predictions[example.id]
        exact_total += max(exact_match(prediction, gold) for gold in golds)
        f1_total += max(token_f1(prediction, gold) for gold in golds)
    unknown = len(set(predictions) - known)
    if warn is not None:
        if missing:
            warn(f"{missing} unanswered question(s) received score 0")
        if unknown:
            warn(f"{unknown} prediction(s) for ids not in the dataset were ignored")
    return {"exact_match": 100.0 * exact_total / total, "f1": 100.0 * f1_total / total}


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
