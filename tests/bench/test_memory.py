import json

from deformer_bench.bench.memory import operator_bytes
from deformer_bench.bench.run import BenchConfig, paper_memory_metric


def test_operator_bytes_resolve_every_tensor_and_scale_with_length(tiny_graphs):
    short, unresolved_short = operator_bytes(tiny_graphs / "full.onnx", {
        "input_ids": (1, 16), "attention_mask": (1, 16), "token_type_ids": (1, 16)})
    long, unresolved_long = operator_bytes(tiny_graphs / "full.onnx", {
        "input_ids": (1, 32), "attention_mask": (1, 32), "token_type_ids": (1, 32)})
    assert unresolved_short == unresolved_long == 0
    assert long > short > 0


def test_online_path_requests_less_than_unsplit(tiny_graphs):
    manifest = json.loads((tiny_graphs / "manifest.json").read_text())
    metric = paper_memory_metric(BenchConfig("tiny", tiny_graphs, manifest))
    assert metric["unresolved_tensors"] == 0
    assert 0 < metric["online"] < metric["unsplit"]
    assert metric["passage_precompute"] > 0
