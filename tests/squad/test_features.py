import numpy as np
import pytest

from deformer_bench.model import default_model_dir
from deformer_bench.squad.data import Answer, Example, load_squad
from deformer_bench.squad.features import featurize, window_starts
from deformer_bench.squad.metric import evaluate, normalize_answer
from deformer_bench.squad.postprocess import predictions_from_logits
from tests.conftest import SQUAD_DIR

QUESTION_LEN, PASSAGE_LEN = 32, 96


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir())


@pytest.fixture(scope="module")
def dev_examples():
    return load_squad(SQUAD_DIR / "dev-v1.1.json.gz")[:300]


def test_window_starts_overlap_by_the_stride():
    assert window_starts(10, 20, 5) == [0]
    assert window_starts(50, 20, 5) == [0, 15, 30]  # windows of 20, step 15: the last covers 30..49


def test_segments_and_lengths(tokenizer, dev_examples):
    features = featurize(dev_examples[:20], tokenizer, QUESTION_LEN, PASSAGE_LEN, 32, progress=False)
    assert features.question_input_ids.shape[1] == QUESTION_LEN and features.passage_input_ids.shape[1] == PASSAGE_LEN
    assert (features.question_input_ids[:, 0] == tokenizer.cls_token_id).all()
    for ids, mask in zip(features.passage_input_ids, features.passage_attention_mask):
        assert ids[mask.sum() - 1] == tokenizer.sep_token_id and tokenizer.cls_token_id not in ids[:mask.sum()]
    assert len(features) > 20  # long contexts give several windows
    unsplit = features.unsplit_inputs()
    assert unsplit["input_ids"].shape[1] == QUESTION_LEN + PASSAGE_LEN
    assert (unsplit["token_type_ids"][:, QUESTION_LEN:] == 1).all()


def test_gold_positions_round_trip_to_the_gold_answers(tokenizer, dev_examples):
    """Labels point at the answer: logits peaked at them decode to the gold text, except where the gold
    answer is part of one wordpiece ('8' inside '18'), where the whole piece comes back."""
    features = featurize(dev_examples, tokenizer, QUESTION_LEN, PASSAGE_LEN, 32, training=True, progress=False)
    assert features.skipped_examples == 0
    width = QUESTION_LEN + PASSAGE_LEN
    start = np.full((len(features), width), -10.0)
    end = np.full((len(features), width), -10.0)
    rows = np.arange(len(features))
    has_answer = features.start_positions > 0
    start[rows[has_answer], features.start_positions[has_answer]] = 10.0
    end[rows[has_answer], features.end_positions[has_answer]] = 10.0
    predictions = predictions_from_logits(dev_examples, features, start, end, QUESTION_LEN)
    misses = [(predictions[e.id], e.answers[0].text) for e in dev_examples
              if normalize_answer(predictions[e.id]) != normalize_answer(e.answers[0].text)]
    assert all(gold in prediction for prediction, gold in misses), misses
    assert len(misses) < 0.05 * len(dev_examples)
    assert evaluate(dev_examples, predictions)["exact_match"] > 95


def test_answer_not_at_its_start_is_skipped_and_counted(tokenizer):
    good = Example("a", "t", "Paris is in France.", "Where?", (Answer("France", 12),))
    bad = Example("b", "t", "Paris is in France.", "Where?", (Answer("France", 3),))
    features = featurize([good, bad], tokenizer, QUESTION_LEN, PASSAGE_LEN, 32, training=True, progress=False)
    assert features.skipped_examples == 1 and list(features.example_index) == [0]


@pytest.mark.parametrize("doc_stride", [95, 128, -1])
def test_a_stride_that_leaves_no_new_tokens_is_refused(tokenizer, doc_stride):
    from deformer_bench.contracts.errors import ConfigError

    example = Example("a", "t", "Paris is in France.", "Where?", (Answer("France", 12),))
    with pytest.raises(ConfigError, match="smaller than the passage window of 95 tokens"):
        featurize([example], tokenizer, QUESTION_LEN, PASSAGE_LEN, doc_stride, progress=False)


def test_long_passages_do_not_warn_about_indexing_errors(capfd):
    """Windows are cut after tokenizing: the 512-token warning of transformers does not apply and misleads."""
    from transformers import AutoTokenizer

    from deformer_bench.model import default_model_dir
    from deformer_bench.squad.data import Example
    from deformer_bench.squad.features import featurize

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    features = featurize([Example("q", "t", "word " * 700, "Why?", ())], tokenizer, 16, 128, 32, progress=False)
    assert len(features) > 5
    assert "indexing errors" not in capfd.readouterr().err
