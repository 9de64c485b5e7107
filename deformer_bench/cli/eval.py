"""deformer-eval: the official SQuAD v1.1 metric on a predictions file, or a model evaluated end to end."""

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import DeformerBenchError, ManifestError
from ..files import write_texts_atomically
from ..model import POSITION_OFFSETS
from ..readers import read_json
from .common import check_outputs, command_line, interrupts_name_an_unfinished_cache, positive_int, run_cli

DEFAULT_DOC_STRIDE = 128
# Options that only mean something when a model is evaluated: with --predictions they are refused, not ignored.
MODEL_OPTIONS = ("onnx", "variant", "passage_cache", "layer", "question_len", "passage_len", "position_offset", "limit",
                 "doc_stride", "write_predictions", "output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deformer-eval",
        description="Score predictions ({question_id: text}) with the official SQuAD v1.1 metric, or evaluate "
                    "a model directory end to end (PyTorch, or its exported graphs with --onnx).")
    parser.add_argument("--dataset", type=Path, required=True, help="SQuAD v1.1 .json or .json.gz")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="predictions JSON to score")
    source.add_argument("--model", type=Path, help="DeFormer (or HF QA) model directory to evaluate")
    parser.add_argument("--onnx", type=Path, help="evaluate through this exported graph set of --model")
    parser.add_argument("--variant",
                        help="with --onnx: evaluate this variant of the graph set (optimized, int8, int8-arm64, "
                             "float16, ort; default: the float32 graphs)")
    parser.add_argument("--passage-cache", type=Path,
                        help="with --onnx: keep the passage cache (lower_passage once per distinct window) in this "
                             "directory, built if it does not exist, reused if it does")
    parser.add_argument("--layer", "-k", type=int,
                        help="k for a plain HF directory (0 = unsplit); with --onnx, the graph set's")
    parser.add_argument("--question-len", type=positive_int,
                        help="override the model's question length (with --onnx: must equal the graph set's)")
    parser.add_argument("--passage-len", type=positive_int,
                        help="override the model's passage window length (with --onnx: must equal the graph set's)")
    parser.add_argument("--position-offset", choices=POSITION_OFFSETS,
                        help="override where passage positions start (with --onnx: must equal the graph set's)")
    parser.add_argument("--limit", type=positive_int, help="first N questions only")
    parser.add_argument("--doc-stride", type=int, default=None,
                        help=f"overlap of consecutive passage windows, in tokens (default {DEFAULT_DOC_STRIDE})")
    parser.add_argument("--write-predictions", type=Path, help="save the model's predictions here")
    parser.add_argument("--output", type=Path,
                        help="also save the scores with the model, graph set, machine, versions and command (JSON)")
    parser.add_argument("--quiet", action="store_true")
    return parser


def read_predictions(path: Path) -> dict:
    predictions = read_json(path, "predictions", hint="give a JSON object {id: answer}")
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise DeformerBenchError(f"predictions {path} must be a JSON object of question id -> answer text",
                                 "write predictions as {\"id\": \"answer\", ...}")
    return predictions


def eval_main(argv=None) -> int:
    from ..squad.data import load_squad
    from ..squad.metric import evaluate, warn_to_stderr

    args = build_parser().parse_args(argv)
    if args.predictions:
        given = [f"--{name.replace('_', '-')}" for name in MODEL_OPTIONS if getattr(args, name) is not None]
        if given:
            raise DeformerBenchError(f"{', '.join(given)} evaluate a model and mean nothing with --predictions",
                                     "drop them, or give --model DIR instead of --predictions")
        scores = evaluate(load_squad(args.dataset), read_predictions(args.predictions), warn=warn_to_stderr)
        print(json.dumps(scores))
        return 0
    if args.variant is not None and args.onnx is None:
        raise DeformerBenchError("--variant picks a variant of an exported graph set, and no --onnx was given",
                                 "give --onnx OUT/ (exported with that variant), or drop --variant")
    from ..environment import describe_environment
    from ..evaluate import evaluate_model

    # before minutes of evaluation, not after
    # the model folder holds the tokenizer too; a variant's graphs lie inside the graph set
    check_outputs({"--write-predictions": args.write_predictions, "--output": args.output}, args.passage_cache,
                  {"the dataset": args.dataset, "the model directory": args.model, "the graph set": args.onnx})

    # Taken before the work, so that the commit and tree state are those the figures came from.
    environment = describe_environment(["deformer-eval", *(argv if argv is not None else sys.argv[1:])])
    if args.doc_stride is None:
        args.doc_stride = DEFAULT_DOC_STRIDE
    started = time.perf_counter()
    with interrupts_name_an_unfinished_cache(args.passage_cache):
        result = evaluate_model(args.model, args.dataset, onnx_dir=args.onnx, onnx_variant=args.variant,
                                limit=args.limit, doc_stride=args.doc_stride, layer=args.layer,
                                question_len=args.question_len, passage_len=args.passage_len,
                                progress=not args.quiet, warn=warn_to_stderr, passage_cache_dir=args.passage_cache,
                                passage_position_offset=args.position_offset,
                                passage_cache_commands=cache_commands(args) if args.passage_cache else None)
    summary = {**result.scores, "questions": result.questions, "windows": result.windows, "backend": result.backend}
    if result.passage_cache:
        summary["passage_cache"] = result.passage_cache
    outputs = {}
    if args.write_predictions:
        outputs[args.write_predictions] = json.dumps(result.predictions)
    if args.output:
        record = evaluation_record(args, result, summary, environment, time.perf_counter() - started)
        outputs[args.output] = json.dumps(record, indent=1) + "\n"
    write_texts_atomically(outputs)  # both or neither
    print(json.dumps(summary))
    return 0


def cache_commands(args):
    """The commands a kept passage cache names: this evaluation (it builds the cache, and goes on with it after a
    kill), and how windows the cache lacks are added: deformer-cache build of the dataset's paragraphs, with the
    same graphs, variant, stride and tokenizer."""
    from ..passage_cache import CacheCommands

    variant = ("--variant", args.variant) if args.variant else ()
    start = command_line("deformer-eval", "--dataset", args.dataset, "--model", args.model, "--onnx", args.onnx,
                         *variant, "--passage-cache", args.passage_cache, "--doc-stride", args.doc_stride,
                         *(("--limit", args.limit) if args.limit else ()))
    append = command_line("deformer-cache", "build", args.onnx, *variant, "--passages", args.dataset, "--out",
                          args.passage_cache, "--doc-stride", args.doc_stride, "--tokenizer", args.model, "--append")
    return CacheCommands(start, f"add the dataset's passages to it: {append}; or give a new --passage-cache "
                                "directory")


def evaluation_record(args, result, summary: dict, environment: dict, seconds: float) -> dict:
    record = {"format_version": 1, **summary, "dataset": str(args.dataset), "limit": args.limit,
              "doc_stride": args.doc_stride, "model_dir": str(args.model),
              "model_fingerprint_sha256": result.model_fingerprint_sha256, "deformer": result.deformer,
              "evaluation_seconds": round(seconds, 1), "environment": environment}
    if args.onnx:
        record["graph_set"] = {"dir": str(args.onnx), "variant": args.variant or "float32",
                               "manifest": read_json(args.onnx / "manifest.json", "graph set manifest",
                                                      ManifestError)}
        record["passage_cache"] = result.passage_cache
    return record


def main(argv=None) -> None:
    sys.exit(run_cli(eval_main, argv))


if __name__ == "__main__":
    main()
