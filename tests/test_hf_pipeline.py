"""A k=0 model through transformers' question-answering pipeline in its own layout: deformer-eval's answers."""

import shutil
from pathlib import Path

import pytest

from deformer_bench.errors import ConfigError
from deformer_bench.evaluate import evaluate_model
from deformer_bench.squad.data import load_squad
from tests.conftest import SQUAD_DIR

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
DEV = SQUAD_DIR / "dev-v1.1.json.gz"


def pipeline_answers(qa, examples) -> dict:
    return {example.id: qa(question=example.question, context=example.context)["answer"] for example in examples}


@pytest.mark.skipif(not (REFERENCE / "teacher" / "model").is_dir() or not DEV.is_file(),
                    reason="the reference teacher and the SQuAD dev set")
def test_the_reference_teacher_through_transformers_answers_as_deformer_eval():
    """The shipped teacher, loaded as transformers' BertForQuestionAnswering in a QuestionAnsweringPipeline: the
    same answers as deformer-eval's PyTorch path on the first 30 dev questions (passages of one and of two
    windows), batched or not; transformers' own pipeline, in its layout, answers otherwise."""
    from deformer_bench.hf_pipeline import deformer_qa_pipeline

    model = REFERENCE / "teacher" / "model"
    examples = load_squad(DEV)[:30]
    expected = evaluate_model(model, DEV, limit=30, progress=False).predictions
    qa = deformer_qa_pipeline(model)
    assert pipeline_answers(qa, examples) == expected
    batched = qa(question=[e.question for e in examples[:8]], context=[e.context for e in examples[:8]],
                 batch_size=4)
    assert [answer["answer"] for answer in batched] == [expected[e.id] for e in examples[:8]]
    first = qa(question=examples[0].question, context=examples[0].context)
    assert examples[0].context[first["start"]:first["end"]] == first["answer"] and 0 < first["score"] <= 1


@pytest.fixture(scope="module")
def tiny_k0_model(tmp_path_factory, tiny_with_tokenizer):
    """The tiny BERT with MiniLM's tokenizer as a k=0 DeFormer directory whose passage positions start at 0."""
    from deformer_bench.model import DeformerConfig

    directory = tmp_path_factory.mktemp("tiny-k0") / "model"
    shutil.copytree(tiny_with_tokenizer, directory)
    DeformerConfig(0, question_len=16, passage_len=64, passage_position_offset="zero").save(directory)
    return directory


def test_position_ids_follow_the_models_offset(tiny_k0_model, small_train_file):
    """Passage positions from 0 ("zero" offset), as the k=0 DeFormer reads them (transformers would number them
    on from the question, 16 on): the same answers as deformer-eval."""
    from deformer_bench.hf_pipeline import deformer_qa_pipeline

    examples = load_squad(small_train_file)[:12]
    expected = evaluate_model(tiny_k0_model, small_train_file, limit=12, doc_stride=16, progress=False).predictions
    qa = deformer_qa_pipeline(tiny_k0_model)
    assert qa.position_ids[0, 16].item() == 0 and qa.position_ids[0, 15].item() == 15
    assert {e.id: qa(question=e.question, context=e.context, doc_stride=16)["answer"] for e in examples} == expected


def test_what_the_layout_fixes_is_refused_and_a_split_model_too(tiny_k0_model, tmp_path):
    from deformer_bench.hf_pipeline import deformer_qa_pipeline
    from deformer_bench.model import DeformerConfig

    qa = deformer_qa_pipeline(tiny_k0_model)
    for option in ({"max_seq_len": 384}, {"align_to_words": False}, {"top_k": 3}):
        with pytest.raises(ConfigError):
            qa(question="Why?", context="Because.", **option)
    split = tmp_path / "k1"
    shutil.copytree(tiny_k0_model, split)
    DeformerConfig(1, question_len=16, passage_len=64).save(split)
    with pytest.raises(ConfigError, match="k=1 DeFormer runs its first 1 layers on question and passage apart"):
        deformer_qa_pipeline(split)
    (split / "deformer.json").unlink()
    with pytest.raises(ConfigError, match="has no deformer.json"):
        deformer_qa_pipeline(split)
