"""evaluate(EvaluateRequest) -> EvaluateResult: SQuAD v1.1 scores of predictions, or of a model directory evaluated
end to end in PyTorch or through its exported graphs (what deformer-eval does)."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..contracts.errors import DeformerBenchError, ManifestError
from ..contracts.readers import read_json
from ..environment import describe_environment
from ..evaluate import evaluate_model
from ..files import command_line, write_texts_atomically
from ..passage_cache import CacheCommands
from ..squad.data import load_squad
from ..squad.metric import evaluate as squad_scores
from ..squad.metric import warn_to_stderr
from .common import PathFields, check_outputs, interrupts_name_an_unfinished_cache

DEFAULT_DOC_STRIDE = 128
# Options that only mean something when a model is evaluated: with predictions they are refused, not ignored.
MODEL_OPTIONS = ("onnx", "variant", "passage_cache", "layer", "question_len", "passage_len", "position_offset", "limit",
                 "doc_stride", "write_predictions", "output")


@dataclass
class EvaluateRequest(PathFields):
    """One field per deformer-eval option (README, "Accuracy"): `predictions` ({question id: text}) to score, or a
    `model` directory to evaluate (through its graph set `onnx`, `variant` and a kept `passage_cache`)."""

    dataset: Path
    predictions: Path = None
    model: Path = None
    onnx: Path = None
    variant: str = None
    passage_cache: Path = None
    layer: int = None
    question_len: int = None
    passage_len: int = None
    position_offset: str = None
    limit: int = None
    doc_stride: int = None
    write_predictions: Path = None
    output: Path = None
    progress: bool = True
    command: tuple = ("deformer_bench.api.evaluate",)  # what the evaluation record says was run


@dataclass
class EvaluateResult:
    """`scores`: exact_match and f1 (and, for a model, questions, windows, backend, passage_cache);
    `predictions`: the model's {question id: text} (None when predictions were scored)."""

    scores: dict
    predictions: dict = None


def read_predictions(path: Path) -> dict:
    predictions = read_json(path, "predictions", hint="give a JSON object {id: answer}")
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise DeformerBenchError(f"predictions {path} must be a JSON object of question id -> answer text",
                                 "write predictions as {\"id\": \"answer\", ...}")
    return predictions


def evaluate(request: EvaluateRequest) -> EvaluateResult:
    if (request.predictions is None) == (request.model is None):
        raise DeformerBenchError("give predictions to score or a model to evaluate, one of them",
                                 "give --predictions FILE or --model DIR")
    if request.predictions:
        given = [f"--{name.replace('_', '-')}" for name in MODEL_OPTIONS if getattr(request, name) is not None]
        if given:
            raise DeformerBenchError(f"{', '.join(given)} evaluate a model and mean nothing with --predictions",
                                     "drop them, or give --model DIR instead of --predictions")
        return EvaluateResult(squad_scores(load_squad(request.dataset), read_predictions(request.predictions),
                                           warn=warn_to_stderr))
    if request.variant is not None and request.onnx is None:
        raise DeformerBenchError("--variant picks a variant of an exported graph set, and no --onnx was given",
                                 "give --onnx OUT/ (exported with that variant), or drop --variant")
    # before minutes of evaluation, not after
    # the model folder holds the tokenizer too; a variant's graphs lie inside the graph set
    check_outputs({"--write-predictions": request.write_predictions, "--output": request.output},
                  request.passage_cache,
                  {"the dataset": request.dataset, "the model directory": request.model, "the graph set": request.onnx})
    # Taken before the work, so that the commit and tree state are those the figures came from.
    environment = describe_environment(list(request.command))
    doc_stride = DEFAULT_DOC_STRIDE if request.doc_stride is None else request.doc_stride
    started = time.perf_counter()
    with interrupts_name_an_unfinished_cache(request.passage_cache):
        result = evaluate_model(request.model, request.dataset, onnx_dir=request.onnx, onnx_variant=request.variant,
                                limit=request.limit, doc_stride=doc_stride, layer=request.layer,
                                question_len=request.question_len, passage_len=request.passage_len,
                                progress=request.progress, warn=warn_to_stderr,
                                passage_cache_dir=request.passage_cache,
                                passage_position_offset=request.position_offset,
                                passage_cache_commands=(cache_commands(request, doc_stride) if request.passage_cache
                                                        else None))
    summary = {**result.scores, "questions": result.questions, "windows": result.windows, "backend": result.backend}
    if result.passage_cache:
        summary["passage_cache"] = result.passage_cache
    outputs = {}
    if request.write_predictions:
        outputs[request.write_predictions] = json.dumps(result.predictions)
    if request.output:
        record = evaluation_record(request, doc_stride, result, summary, environment, time.perf_counter() - started)
        outputs[request.output] = json.dumps(record, indent=1) + "\n"
    write_texts_atomically(outputs)  # both or neither
    return EvaluateResult(summary, result.predictions)


def cache_commands(request: EvaluateRequest, doc_stride: int):
    """The commands a kept passage cache names: this evaluation (it builds the cache, and goes on with it after a
    kill), and how windows the cache lacks are added: deformer-cache build of the dataset's paragraphs, with the
    same graphs, variant, stride and tokenizer."""
    variant = ("--variant", request.variant) if request.variant else ()
    start = command_line("deformer-eval", "--dataset", request.dataset, "--model", request.model, "--onnx",
                         request.onnx, *variant, "--passage-cache", request.passage_cache, "--doc-stride", doc_stride,
                         *(("--limit", request.limit) if request.limit else ()))
    append = command_line("deformer-cache", "build", request.onnx, *variant, "--passages", request.dataset, "--out",
                          request.passage_cache, "--doc-stride", doc_stride, "--tokenizer", request.model,
                          "--append")
    return CacheCommands(start, f"add the dataset's passages to it: {append}; or give a new --passage-cache "
                                "directory")


def evaluation_record(request: EvaluateRequest, doc_stride: int, result, summary: dict, environment: dict,
                      seconds: float) -> dict:
    record = {"format_version": 1, **summary, "dataset": str(request.dataset), "limit": request.limit,
              "doc_stride": doc_stride, "model_dir": str(request.model),
              "model_fingerprint_sha256": result.model_fingerprint_sha256, "deformer": result.deformer,
              "evaluation_seconds": round(seconds, 1), "environment": environment}
    if request.onnx:
        record["graph_set"] = {"dir": str(request.onnx), "variant": request.variant or "float32",
                               "manifest": read_json(request.onnx / "manifest.json", "graph set manifest",
                                                      ManifestError)}
        record["passage_cache"] = result.passage_cache
    return record
