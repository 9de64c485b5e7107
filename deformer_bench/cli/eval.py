"""deformer-eval: the official SQuAD v1.1 metric on a predictions file, or a model evaluated end to end."""

import argparse
import json
import sys
from pathlib import Path

from ..api.evaluating import DEFAULT_DOC_STRIDE, EvaluateRequest, evaluate
from ..model import POSITION_OFFSETS
from .common import ArgumentParser, positive_int, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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


def eval_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = evaluate(EvaluateRequest(
        args.dataset, predictions=args.predictions, model=args.model, onnx=args.onnx, variant=args.variant,
        passage_cache=args.passage_cache, layer=args.layer, question_len=args.question_len,
        passage_len=args.passage_len, position_offset=args.position_offset, limit=args.limit,
        doc_stride=args.doc_stride, write_predictions=args.write_predictions, output=args.output,
        progress=not args.quiet, command=("deformer-eval", *(argv if argv is not None else sys.argv[1:]))))
    print(json.dumps(result.scores))
    return 0


def main(argv=None) -> None:
    sys.exit(run_cli(eval_main, argv))


if __name__ == "__main__":
    main()
