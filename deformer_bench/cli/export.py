"""deformer-export MODEL_DIR OUT/: split a model into validated ONNX graphs plus manifest.json."""

import argparse
import sys
from pathlib import Path

from ..api.exporting import ExportRequest, export
from ..model import POSITION_OFFSETS
from .common import ArgumentParser, run_cli

QUANTIZE_CHOICES = ("int8", "int8-arm64")


def quantize_list(text: str) -> list:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUANTIZE_CHOICES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: give int8, int8-arm64 or both, comma-separated")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="deformer-export",
        description="Export lower_question, lower_passage, upper and full ONNX graphs of a DeFormer, "
                    "each validated against PyTorch, with manifest.json.",
    )
    parser.add_argument("model_dir", type=Path, help="DeFormer or plain Hugging Face model directory")
    parser.add_argument("out_dir", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--layer", "-k", type=int, help="separation layer k (required for a plain HF directory)")
    parser.add_argument("--question-len", type=int, help="padded question length (default: deformer.json, else 27)")
    parser.add_argument("--passage-len", type=int, help="padded passage length (default: deformer.json, else 293)")
    parser.add_argument("--position-offset", choices=POSITION_OFFSETS,
                        help="where passage position ids start (default: deformer.json, else question_len)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    parser.add_argument("--optimize", action="store_true",
                        help="also write the 'optimized' variant: onnxruntime's transformer optimizer (fused "
                             "attention, SkipLayerNormalization, BiasGelu)")
    parser.add_argument("--quantize", type=quantize_list, default=[], metavar="int8[,int8-arm64]",
                        help="also write these int8 variants, comma-separated (dynamic quantization; int8: x86, "
                             "per tensor; int8-arm64: per channel), made from 'optimized' when --optimize is given")
    parser.add_argument("--fp16", action="store_true",
                        help="also write the 'float16' variant (for GPUs; float32 inputs and outputs kept)")
    parser.add_argument("--ort-format", action="store_true",
                        help="also write the 'ort' variant: the last CPU variant (int8-arm64, int8, optimized or "
                             "float32) in onnxruntime's ORT format, optimized for ARM, for mobile runtimes")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT/ if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def export_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    variants = [name for name, asked in (("optimized", args.optimize), ("float16", args.fp16),
                                         ("ort", args.ort_format)) if asked] + args.quantize
    result = export(ExportRequest(args.model_dir, args.out_dir, layer=args.layer, question_len=args.question_len,
                                  passage_len=args.passage_len, position_offset=args.position_offset,
                                  opset=args.opset, variants=variants, overwrite=args.overwrite,
                                  progress=not args.quiet))
    manifest = result.manifest
    print(f"wrote {args.out_dir}: k={result.layer} of {result.num_layers} layers, "
          f"validated at {len(manifest['validation']['cases'])} shapes (max abs diff {result.worst_difference:.1e})")
    for name, entry in manifest.get("variants", {}).items():
        validation = entry["validation"]
        print(f"  variant {name} (from {entry['parent']}): max abs diff from float32 "
              f"{max(validation['worst_max_abs_diff'].values()):.1e} (tolerance {validation['tolerance']:g})")
        for problem in entry.get("fusion_problems", []):
            print(f"warning: variant {name}: {problem}", file=sys.stderr)
    return 0


def main(argv=None) -> None:
    sys.exit(run_cli(export_main, argv))


if __name__ == "__main__":
    main()
