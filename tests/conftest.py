"""Tiny random models (2 layers, hidden 32) for fast tests; the real MiniLM only where named."""

import json
from pathlib import Path

import pytest
import torch

SQUAD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"
TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=96)


def tiny_qa_model(model_type: str = "bert", seed: int = 0):
    from transformers import (BertConfig, BertForQuestionAnswering, ElectraConfig, ElectraForQuestionAnswering,
                              RobertaConfig, RobertaForQuestionAnswering)

    torch.manual_seed(seed)
    if model_type == "bert":
        model = BertForQuestionAnswering(BertConfig(**TINY))
    elif model_type == "roberta":
        model = RobertaForQuestionAnswering(RobertaConfig(**{**TINY, "max_position_embeddings": 100},
                                                          type_vocab_size=1, pad_token_id=1))
    elif model_type == "electra":
        model = ElectraForQuestionAnswering(ElectraConfig(**TINY, embedding_size=16))
    else:
        raise ValueError(model_type)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A BERT QA model directory with a (random) QA head saved in it."""
    directory = tmp_path_factory.mktemp("tiny") / "bert-qa"
    tiny_qa_model().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """An encoder-only directory (like MiniLM): no QA head in its weights."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    directory = tmp_path_factory.mktemp("tiny") / "bert-encoder"
    BertModel(BertConfig(**TINY)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_graphs(tmp_path_factory, tiny_model_dir) -> Path:
    """An exported, validated graph set of the tiny model at k=1 (lengths 8 + 24)."""
    from deformer_bench.model import Deformer
    from deformer_bench.exporters.onnx_export import export_graph_set

    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24)
    out = tmp_path_factory.mktemp("graphs") / "tiny-k1"
    export_graph_set(deformer, out, progress=False)
    return out


@pytest.fixture
def gpt2_dir(tmp_path) -> Path:
    directory = tmp_path / "gpt2"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    return directory


@pytest.fixture(scope="session")
def tiny_with_tokenizer(tmp_path_factory):
    """A tiny BERT with MiniLM's vocabulary and tokenizer, so real SQuAD text can be featurized."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from deformer_bench.model import default_model_dir

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-tok") / "model"
    BertModel(BertConfig(**{**TINY, "vocab_size": 30522, "max_position_embeddings": 128})).save_pretrained(directory)
    AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def small_train_file(tmp_path_factory):
    """Four paragraphs of the real dev set as a training file: a few dozen questions."""
    import gzip

    document = json.load(gzip.open(SQUAD_DIR / "dev-v1.1.json.gz"))
    document["data"] = document["data"][:1]
    document["data"][0]["paragraphs"] = document["data"][0]["paragraphs"][:4]
    path = tmp_path_factory.mktemp("squad") / "small.json"
    path.write_text(json.dumps(document))
    return path


TINY_QUEUE = """
defaults: {{train_file: {train_file}, question_len: 16, passage_len: 64, doc_stride: 16, batch_size: 8,
           learning_rate: 0.001, bf16: false, checkpoint_every: 2}}
evaluation: {{dataset: {train_file}, limit: 6}}
runs:
  - {{name: teacher, init: {init}, layer: 0, gamma: 1.0, alpha: 0, beta: 0}}
  - {{name: k1-kd-lrs, init: teacher, teacher: teacher, layer: 1}}
  - {{name: k1-none, init: teacher, layer: 1, gamma: 1.0, alpha: 0, beta: 0}}
"""


@pytest.fixture(scope="session")
def tiny_queue_runs(tmp_path_factory, tiny_with_tokenizer, small_train_file):
    """A finished, evaluated training queue of the tiny model: a teacher and two k=1 students."""
    from deformer_bench.cli.train import train_main

    root = tmp_path_factory.mktemp("queue")
    queue = root / "queue.yaml"
    queue.write_text(TINY_QUEUE.format(train_file=small_train_file, init=tiny_with_tokenizer))
    assert train_main(["--queue", str(queue), "--runs-dir", str(root / "runs"), "--quiet"]) == 0
    return queue, root / "runs"


@pytest.fixture(scope="session")
def tiny_student_graphs(tmp_path_factory, tiny_queue_runs) -> Path:
    """The exported graph set of the tiny queue's k1-kd-lrs student (a trained QA head, MiniLM's tokenizer)."""
    from deformer_bench.model import Deformer
    from deformer_bench.exporters.onnx_export import export_graph_set

    out = tmp_path_factory.mktemp("student-graphs") / "k1-kd-lrs"
    export_graph_set(Deformer.from_pretrained(tiny_queue_runs[1] / "k1-kd-lrs" / "model"), out, progress=False)
    return out
