"""deformer-cache build | verify | info: the passage cache as a command of its own (passage_cache/)."""

import argparse
import json
import os
import sys
from pathlib import Path

from ..answer import PASSAGES_FILE  # what a passages file is: the same for both commands
from ..api.caching import MAX_TRAIN_SEED, MAX_TRAIN_WINDOWS, CacheBuildRequest, build_cache, cache_info, verify_cache
from ..passage_cache.quantizers import CodecError, parse_settings
from .common import ArgumentParser, int_up_to, run_cli

INTERRUPTED = ("interrupted: the segments finished so far are kept and listed; the same command goes on from "
               "there")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="deformer-cache", description="Build, check and describe passage caches: "
                                     "lower_passage's states of every passage window, stored once, read online.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="run lower_passage once per distinct window and store the states")
    build.add_argument("graphs", type=Path, help="graph set directory written by deformer-export")
    build.add_argument("--variant", help="build with this variant's lower_passage (optimized, int8, int8-arm64, "
                       "float16, ort: one the graph set was exported with; default: the float32 graphs), as "
                       "deformer-eval --variant reads it")
    build.add_argument("--passages", type=Path, required=True, help=PASSAGES_FILE)
    build.add_argument("--out", type=Path, required=True, help="cache directory (a killed build into it goes on)")
    build.add_argument("--dtype", choices=("float32", "float16", "int8", "pq", "rq", "binary"),
                       help="stored precision (int8: one scale per token), or a codec learned from the passages' "
                            "own states at the start of the build (pq: product quantization, m bytes a token; rq: a "
                            "centroid id and a b-bit residual a dimension; binary: a sign bit a dimension and "
                            "float16 scales; these need the extra .[codecs]); read back as float32 (default: the "
                            "cache's own; float32 for a new cache)")
    build.add_argument("--codec-settings", type=codec_settings, metavar="KEY=VALUE,...",
                       help="a learned codec's settings (pq: m=96, transform=none|opq|pca|fisher, alpha=0.1; rq: "
                            "centroids=1024, bits=1|2|4; binary: group=DIMENSIONS, refit=true); default: those; "
                            "with --append, the cache's")
    build.add_argument("--codec-metric", type=Path, help="pq transform=fisher: the upper layers' sensitivity, an "
                       "[H, H] float .npy (experiments/passage_cache_codecs.py fisher)")
    build.add_argument("--train-windows", type=int_up_to(MAX_TRAIN_WINDOWS, "a codec's sample is computed and held "
                       "whole in memory"), help="a learned codec's training sample: this many distinct "
                       "windows drawn from the passages (default 1000: ~150k token states at 224 tokens)")
    build.add_argument("--train-seed", type=int_up_to(MAX_TRAIN_SEED, "a numpy and faiss seed", minimum=0),
                       help="the seed of the sample's draw and of the codec's k-means (default 0)")
    build.add_argument("--doc-stride", type=int, default=128, help="overlap of consecutive windows (default 128)")
    build.add_argument("--append", action="store_true", help="add these passages' new windows to a complete cache "
                       "(an unfinished one goes on only with the passages it was started with)")
    build.add_argument("--tokenizer", type=Path, help="model directory holding the tokenizer (default: the one "
                       "the graphs were exported from)")
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--segment-windows", type=int, default=1024, help="windows per segment (default 1024)")
    build.add_argument("--shard-passages", type=int, default=20000,
                       help="passages read, tokenized and built at a time (default 20000): one shard's text and "
                            "windows are in memory at once, besides the index of stored keys (32 bytes a window), "
                            "this build's new keys (16 bytes a window, 32 at peak) and a 16-byte digest per passage id "
                            "(JSON Lines are checked whole first, then read a shard at a time); free space is checked "
                            "per shard")
    build.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process; ray: Ray Data with an actor pool of ONNX Runtime sessions")
    build.add_argument("--address", help="with --engine ray: auto, or ray://HOST:PORT of a running cluster "
                       "(default: start a local Ray with this machine's cores)")
    build.add_argument("--workers", type=int, help="with --engine ray: actors (default: one per CPU Ray reports)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    verify = commands.add_parser("verify", help="check every segment's sha256 and the cache's identity")
    verify.add_argument("cache", type=Path)
    verify.add_argument("--graphs", type=Path, help="also check that the cache belongs to this graph set")
    verify.add_argument("--variant", help="with --graphs: the variant of the graph set the cache was built with")
    info = commands.add_parser("info", help="windows, dtype, bytes per window, identity (JSON)")
    info.add_argument("cache", type=Path)
    return parser


def codec_settings(text: str) -> dict:
    """argparse type: "m=96,transform=opq" -> {"m": 96, "transform": "opq"} (quantizers.parse_settings)."""
    try:
        return parse_settings(text)
    except CodecError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def build_request(args) -> CacheBuildRequest:
    return CacheBuildRequest(args.graphs, args.passages, args.out, variant=args.variant, dtype=args.dtype,
                             doc_stride=args.doc_stride, append=args.append, tokenizer=args.tokenizer,
                             batch_size=args.batch_size, segment_windows=args.segment_windows,
                             shard_passages=args.shard_passages, engine=args.engine, address=args.address,
                             workers=args.workers, progress=not args.quiet, codec_settings=args.codec_settings,
                             codec_metric=args.codec_metric, train_windows=args.train_windows,
                             train_seed=args.train_seed)


def cache_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":
        print(json.dumps(build_cache(build_request(args)).as_json()))
    elif args.command == "verify":
        print(json.dumps(verify_cache(args.cache, args.graphs, args.variant)))
    else:
        print(json.dumps(cache_info(args.cache), indent=1))
    return 0


def main(argv=None) -> None:
    os.environ.setdefault("USE_TORCH", "0")  # graphs and a tokenizer only (see cli/answer.py)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    sys.exit(run_cli(cache_main, argv, interrupted=INTERRUPTED))


if __name__ == "__main__":
    main()
