"""Probe (issue 13): is static (calibrated) int8 worth a variant beside dynamic int8?

Quantizes full, lower_question and upper of a float32 graph set with onnxruntime's quantize_static (QDQ, uint8
activations, symmetric int8 weights per tensor, MinMax calibration on 16 batches of random full-length windows:
a speed probe, not an accuracy one), then times float32, the graph set's dynamic int8 variant and static int8 in
the same interleaved rounds (one process, batch 1, 2 threads), and records each unsplit model's largest logit
difference from float32.

    python experiments/static_int8_probe.py GRAPHS_DIR OUT_DIR      (GRAPHS_DIR exported with --quantize int8)
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from deformer_bench.environment import describe_environment
from deformer_bench.readers import read_json

GRAPHS = ("full", "lower_question", "upper")
ROUNDS, SKIPPED = 25, 3


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def calibration_feeds(source: Path, manifest: dict, count: int = 16) -> list:
    rng = np.random.default_rng(0)
    deformer, vocab = manifest["deformer"], manifest["model"]["vocab_size"]
    lower_question, lower_passage = session(source / "lower_question.onnx"), session(source / "lower_passage.onnx")
    feeds = []
    for _ in range(count):
        question = rng.integers(3, vocab, (1, deformer["question_len"]), dtype=np.int64)
        passage = rng.integers(3, vocab, (1, deformer["passage_len"]), dtype=np.int64)
        feed = {"question_input_ids": question, "question_attention_mask": np.ones_like(question),
                "passage_input_ids": passage, "passage_attention_mask": np.ones_like(passage),
                "input_ids": np.concatenate([question, passage], 1),
                "attention_mask": np.ones((1, question.shape[1] + passage.shape[1]), np.int64),
                "token_type_ids": np.concatenate([np.zeros_like(question),
                                                  np.full_like(passage, deformer["passage_token_type"])], 1)}
        feed["question_hidden"] = lower_question.run(None, {k: feed[k] for k in ("question_input_ids",
                                                                                   "question_attention_mask")})[0]
        feed["passage_hidden"] = lower_passage.run(None, {k: feed[k] for k in ("passage_input_ids",
                                                                                 "passage_attention_mask")})[0]
        feeds.append(feed)
    return feeds


class Reader(CalibrationDataReader):
    def __init__(self, feeds, names):
        self.remaining = iter([{name: feed[name] for name in names} for feed in feeds])

    def get_next(self):
        return next(self.remaining, None)


def quantize_statically(source: Path, out: Path, feeds: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for graph in GRAPHS:
        prepared = out / f".{graph}.prepared.onnx"
        # ONNX's shape inference: onnxruntime's symbolic one cannot finish the exported float32 graphs
        quant_pre_process(str(source / f"{graph}.onnx"), str(prepared), skip_optimization=True,
                          skip_symbolic_shape=True)
        names = [item.name for item in session(prepared).get_inputs()]
        quantize_static(str(prepared), str(out / f"{graph}.onnx"), Reader(feeds, names),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=False, extra_options={"WeightSymmetric": True})
        prepared.unlink()


def main(graphs_dir: str, out_dir: str) -> None:
    source, out = Path(graphs_dir), Path(out_dir)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new folder")
    environment = describe_environment(["python", *sys.argv])
    manifest = read_json(source / "manifest.json", "graph set manifest")
    feeds = calibration_feeds(source, manifest)
    scratch = tempfile.TemporaryDirectory(prefix="static-int8-")  # the graphs are not results: only the record is
    quantize_statically(source, Path(scratch.name), feeds)
    sets = {"float32": source, "int8-dynamic": source / "variants" / "int8", "int8-static": Path(scratch.name)}
    sessions = {name: {graph: session(folder / f"{graph}.onnx") for graph in GRAPHS} for name, folder in sets.items()}
    feed = feeds[0]

    def run(name, graph, **extra):
        graph_session = sessions[name][graph]
        return graph_session.run(None, {item.name: {**feed, **extra}[item.name] for item in graph_session.get_inputs()})

    def online(name):
        question_hidden = run(name, "lower_question")[0]
        return run(name, "upper", question_hidden=question_hidden)

    calls = {}
    for name in sets:
        calls[f"{name}/unsplit"] = lambda name=name: run(name, "full")
        calls[f"{name}/online"] = lambda name=name: online(name)
    reference = run("float32", "full")[0]
    logit_difference = {name: float(np.abs(run(name, "full")[0] - reference).max()) for name in sets}
    samples = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(ROUNDS):
        for position in range(len(names)):
            name = names[(round_index + position) % len(names)]
            started = time.perf_counter_ns()
            calls[name]()
            samples[name].append(time.perf_counter_ns() - started)
    p50_ms = {name: float(np.median(values[SKIPPED:])) / 1e6 for name, values in samples.items()}
    result = {"graphs_dir": str(source), "rounds": ROUNDS, "skipped_rounds": SKIPPED, "p50_ms": p50_ms,
              "max_abs_logit_difference_from_float32": logit_difference, "samples_ns": samples,
              "environment": environment}
    out.mkdir(parents=True)
    (out / "static_int8_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    scratch.cleanup()
    for name, value in p50_ms.items():
        print(f"{name}: p50 {value:.1f} ms")
    print("logit difference from float32:", logit_difference)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
