import json

import pytest

from deformer_bench.squad.data import load_squad
from deformer_bench.squad.metric import evaluate, exact_match, normalize_answer, token_f1
from tests.conftest import SQUAD_DIR


@pytest.mark.parametrize("text, normal", [
    ("The Denver Broncos!", "denver broncos"),
    ("  an  apple,  a pear ", "apple pear"),
    ("Theory of the Universe", "theory of universe"),
    ("A.D. 1066", "ad 1066"),
])
def test_normalize(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1():
    assert exact_match("the Broncos", "Broncos")
    assert token_f1("Denver Broncos", "Broncos") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("cats", "dogs") == 0.0
    assert token_f1("a", "the") == 0.0  # both normalise to nothing: no overlap, as the official script


def test_gold_answers_score_100_on_the_official_dev_set():
    examples = load_squad(SQUAD_DIR / "dev-v1.1.json.gz")
    predictions = {e.id: e.answers[0].text for e in examples}
    assert json.dumps(evaluate(examples, predictions)) == '{"exact_match": 100.0, "f1": 100.0}'


def test_missing_and_unknown_ids_are_counted():
    examples = load_squad(SQUAD_DIR / "dev-v1.1.json.gz")[:4]
    predictions = {examples[0].id: examples[0].answers[0].text, "nope": "x"}
    warnings = []
    scores = evaluate(examples, predictions, warn=warnings.append)
    assert scores["exact_match"] == pytest.approx(25.0)
    assert warnings == ["3 unanswered question(s) received score 0",
                        "1 prediction(s) for ids not in the dataset were ignored"]
