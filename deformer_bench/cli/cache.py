"""deformer-cache build | verify | info: the passage cache as a command of its own (passage_cache/)."""

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

from ..errors import DeformerBenchError, PassageCacheError
from .common import MAX_BATCH_SIZE, check_count, command_line, int_up_to, run_cli, tokenizer_input

# Counts past these are typos: they would not fit in memory (a batch, a segment: ~350 KB a window in float32 at
# 224 x 384), overflow what they are handed to (itertools.islice takes at most sys.maxsize), or start more Ray
# actors than a cluster has cores.
MAX_SEGMENT_WINDOWS = 1_000_000
MAX_SHARD_PASSAGES = 1_000_000_000
MAX_WORKERS = 1024
MAX_TRAIN_WINDOWS = 1_000_000  # ~1.4 GB of float32 token states at 224 x 384 (2/3 full): held whole to train
INTERRUPTED = ("interrupted: the segments finished so far are kept and listed; the same command goes on from "
               "there")


def build_parser() -> argparse.ArgumentParser:
    from ..answer import PASSAGES_FILE  # what a passages file is: the same for both commands

    parser = argparse.ArgumentParser(prog="deformer-cache", description="Build, check and describe passage caches: "
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
                       "whole in memory"), default=1000, help="a learned codec's training sample: this many distinct "
                       "windows drawn from the passages (default 1000: ~150k token states at 224 tokens)")
    build.add_argument("--train-seed", type=int_up_to(2**32 - 1, "a numpy seed", minimum=0), default=0,
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
                            "this build's new keys (16 bytes a window, 32 at peak) and the passage ids (JSON Lines are "
                            "checked whole first, then read a shard at a time); free space is checked per shard")
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


class PassageFile:
    """The passages of a build (answer.PASSAGES_FILE, the file deformer-answer reads), a shard at a time. A JSON
    Lines file is read twice, one line in memory at a time: a first pass checks every line and counts (a bad line
    at passage 15M is refused before any work, not after hours of it), the second yields the shards. A SQuAD
    document is one JSON document, read whole: its distinct paragraphs get ids p00000, p00001, ...; a pipe can be
    read once only, so it is held whole too."""

    def __init__(self, path: Path, tokenizer):
        from ..answer import iter_passages, passages_file

        self.path, self.tokenizer, self.in_memory = path, tokenizer, None
        source = passages_file(path)  # a pipe is read here, once
        if source.kind == "squad" or source.held is not None:
            self.in_memory = list(iter_passages(path, tokenizer, source=source))
        self.signature = self.file_signature()
        self.count = (len(self.in_memory) if self.in_memory is not None
                      else sum(1 for _ in iter_passages(path, tokenizer, source=source)))

    def file_signature(self):
        """What changes when the file is written to or replaced: (device, inode, size, modification time)."""
        if self.in_memory is not None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # gone: the read that follows says so
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns

    def shards(self, size: int):
        """Lists of at most `size` (passage id, text), in file order."""
        from ..answer import InputFileError, iter_passages

        # ids were checked unique by the first pass; the second keeps no set of them (~130 bytes an id)
        passages = (iter(self.in_memory) if self.in_memory is not None
                    else iter_passages(self.path, self.tokenizer, unique_ids=False))
        read = 0
        while shard := list(itertools.islice(passages, size)):
            read += len(shard)
            yield shard
        # A file changed since its check may have mixed old and new passages: the build stops before it is recorded
        # as done (segments written so far stay listed and valid: their keys are the windows they hold).
        if read != self.count or self.file_signature() != self.signature:
            raise InputFileError(f"passages file {self.path} changed while the build read it ({self.count:,} "
                                 f"passages when checked, {read:,} when read again, or its size or time changed)",
                                 "leave it unchanged while a build reads it, then run the build again with the "
                                 "file as it was when the build started (an unfinished cache goes on only with "
                                 "the passages it was started with), or build the changed file into a new "
                                 "directory")


def codec_settings(text: str) -> dict:
    """argparse type: "m=96,transform=opq" -> {"m": 96, "transform": "opq"} (quantizers.parse_settings)."""
    from ..passage_cache.quantizers import CodecError, parse_settings

    try:
        return parse_settings(text)
    except CodecError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def codec_metric(path) -> "np.ndarray":
    """--codec-metric's [H, H] array, or None."""
    if path is None:
        return None
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DeformerBenchError(f"--codec-metric {path} is not a readable .npy array ({error})",
                                 "give the metric the fisher stage wrote (fisher.npy)") from None


def build_command(args) -> dict:
    from exporters.manifest import load_graph_set

    from ..answer import graph_set_tokenizer, passage_examples
    from ..files import check_distinct_paths
    from ..passage_cache import build_passage_cache_from_shards
    from ..passage_cache.build import check_build_location
    from ..passage_cache.store import tokenizer_sha256
    from ..serving import evaluation_session
    from ..squad.features import check_doc_stride, featurize

    for option, value, maximum in (("--batch-size", args.batch_size, MAX_BATCH_SIZE),
                                   ("--segment-windows", args.segment_windows, MAX_SEGMENT_WINDOWS),
                                   ("--shard-passages", args.shard_passages, MAX_SHARD_PASSAGES),
                                   ("--workers", args.workers, MAX_WORKERS)):
        check_count(option, value, maximum)
    # Before any lock, file or Ray: where the cache goes, and that it is none of what the build reads.
    check_distinct_paths({"--out": args.out}, {"the graph set": args.graphs, "the passages file": args.passages,
                                               **({"--codec-metric": args.codec_metric} if args.codec_metric else {}),
                                               **tokenizer_input(args.graphs, args.tokenizer)})
    check_build_location(args.out, "--out")
    if args.engine == "local" and (args.address or args.workers):
        raise DeformerBenchError("--address and --workers belong to --engine ray", "add --engine ray, or drop them")
    engine = None
    if args.engine == "ray":
        from ..passage_cache.ray_engine import RayEngine, import_ray

        import_ray()  # before any work: a missing Ray is one clear error
        engine = RayEngine(args.address, args.workers)
    graph_set = load_graph_set(args.graphs, args.variant)
    deformer = graph_set.manifest["deformer"]
    check_doc_stride(deformer["passage_len"], args.doc_stride)
    tokenizer = graph_set_tokenizer(graph_set, args.tokenizer)
    passages = PassageFile(args.passages, tokenizer)
    shard_count = -(-passages.count // args.shard_passages)
    passes = itertools.count()

    def shards():  # one shard's passages and windows in memory at a time; read twice: plan, then build
        planning = next(passes) == 0
        for number, shard in enumerate(passages.shards(args.shard_passages)):
            windows = featurize(passage_examples(dict(shard)), tokenizer, deformer["question_len"],
                                deformer["passage_len"], args.doc_stride,
                                progress=not args.quiet and shard_count == 1 and not planning)
            if not args.quiet and shard_count > 1:
                print(f"{'planning' if planning else 'building'} shard {number + 1} of {shard_count}: "
                      f"{len(windows):,} windows", file=sys.stderr, flush=True)
            yield windows.passage_input_ids, windows.passage_attention_mask

    try:
        cache = build_passage_cache_from_shards(
            graph_set, shards, args.out, evaluation_session, args.batch_size, not args.quiet, dtype=args.dtype,
            doc_stride=args.doc_stride, append=args.append, segment_windows=args.segment_windows,
            passages=passages.count, tokenizer_sha256=tokenizer_sha256(tokenizer), engine=engine,
            command=build_command_line(args), codec_settings=args.codec_settings, train_windows=args.train_windows,
            train_seed=args.train_seed, metric=codec_metric(args.codec_metric))
    finally:  # a local Ray it started stops here, also when the build fails or is interrupted
        if engine is not None:
            engine.close()
    build = cache.info["builds"][-1]
    return {"cache": str(args.out), "passages": passages.count, "passage_windows": build["windows_given"], **build,
            "cache_windows": cache.windows, "dtype": cache.info["dtype"], "shards": shard_count}


def build_command_line(args) -> str:
    """This build as a command that goes on with it from any directory (the options that decide what it stores)."""
    from ..passage_cache.schema import LEARNED_DTYPES

    return command_line("deformer-cache", "build", args.graphs,
                        *(("--variant", args.variant) if args.variant else ()), "--passages", args.passages,
                        "--out", args.out,
                        *(("--dtype", args.dtype) if args.dtype else ()),
                        *(("--codec-settings", ",".join(f"{key}={value}" for key, value in args.codec_settings.items()))
                          if args.codec_settings else ()),
                        *(("--codec-metric", args.codec_metric) if args.codec_metric else ()),
                        *(("--train-windows", args.train_windows, "--train-seed", args.train_seed)
                          if args.dtype in LEARNED_DTYPES else ()),
                        "--doc-stride", args.doc_stride,
                        *(("--tokenizer", args.tokenizer) if args.tokenizer else ()),
                        "--append" if args.append else None)


def cache_info(directory: Path) -> dict:
    from ..passage_cache import load_passage_cache
    from ..passage_cache.store import unlisted_segments

    from ..passage_cache.quantizers import CODECS
    from ..passage_cache.store import codebook_path

    codes = {name for codec in CODECS.values() for name in codec.CODES}  # every learned codec's code arrays
    cache = load_passage_cache(directory)
    record, identity = cache.info, cache.info["identity"]
    state_bytes = other_bytes = 0  # on disk: the states (or codes and scales), and the rest (keys, ids, masks)
    for segment in cache.segments:
        for name in segment.sha256:
            size = (directory / segment.name / name).stat().st_size
            if name in STATE_FILES or name.removeprefix("passage_").removesuffix(".npy") in codes:
                state_bytes += size
            else:
                other_bytes += size
    on_disk = state_bytes + other_bytes
    codebook_bytes = sum(codebook_path(directory, name).stat().st_size for name in (record["codec"] or {}).get(
        "codebook", {}))
    tokens = cache.windows * identity["passage_len"]
    builds = record["builds"]  # checked whole at open (passage_cache/schema.py)
    last = builds[-1] if builds else {}
    # windows per passage of the last build's passages (a cache keeps windows, not passage ids)
    windows_per_passage = last["windows_given"] / last["passages"] if last.get("passages") else None
    return {"cache": str(directory), "complete": record.get("complete"), "dtype": record["dtype"],
            "windows": cache.windows, "segments": len(cache.segments), "doc_stride": record.get("doc_stride"),
            "codec": record["codec"] and {key: record["codec"][key] for key in ("name", "settings", "sample")},
            "bytes_on_disk": on_disk + codebook_bytes, "codebook_bytes": codebook_bytes,
            "state_bytes_per_window": state_bytes_per_window(cache),
            # per stored token (windows x passage length, padding included): the states (codes and scales) and
            # everything else a segment holds (key, ids, mask or length), measured on disk (.npy headers included)
            "state_bytes_per_token": state_bytes / tokens if tokens else None,
            "other_bytes_per_token": other_bytes / tokens if tokens else None,
            "bytes_per_window": on_disk / cache.windows if cache.windows else None,
            "windows_per_passage": windows_per_passage,
            "bytes_per_passage": on_disk / cache.windows * windows_per_passage
            if cache.windows and windows_per_passage else None,
            "identity": identity, "tokenizer_sha256": record.get("tokenizer_sha256"), "builds": builds,
            "unfinished_build": record["unfinished_build"],
            "unlisted_segments": unlisted_segments(directory, record)}


STATE_FILES = ("passage_hidden.npy", "passage_scale.npy")


def state_bytes_per_window(cache) -> float:
    """What one window's states take as stored: codecs.bytes_per_window, or a learned codec's codes and scales."""
    from ..passage_cache import bytes_per_window

    identity = cache.info["identity"]
    if cache.codec is not None:
        return cache.codec.code_bytes_per_token() * identity["passage_len"]
    return bytes_per_window(cache.info["dtype"], identity["passage_len"], identity["hidden_size"])


def verify_command(args) -> dict:
    import time

    from ..passage_cache import load_passage_cache

    if args.variant is not None and args.graphs is None:
        raise DeformerBenchError("--variant picks a variant of the graph set given with --graphs, and no --graphs "
                                 "was given", "give --graphs OUT/ too, or drop --variant")
    graph_set = None
    if args.graphs is not None:
        from exporters.manifest import load_graph_set

        graph_set = load_graph_set(args.graphs, args.variant)
    cache = load_passage_cache(args.cache, graph_set)  # structure and (with --graphs) identity
    started = time.perf_counter()
    cache.verify()  # every segment's sha256, and no segment folder that no entry lists
    seconds = time.perf_counter() - started
    checked = sum((args.cache / segment.name / name).stat().st_size for segment in cache.segments
                  for name in segment.sha256)
    return {"cache": str(args.cache), "ok": True, "segments": len(cache.segments), "windows": cache.windows,
            "complete": cache.info.get("complete"), "checked_bytes": checked, "seconds": round(seconds, 3),
            "identity_checked": graph_set is not None}


def cache_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":
        print(json.dumps(build_command(args)))
    elif args.command == "verify":
        print(json.dumps(verify_command(args)))
    else:
        print(json.dumps(cache_info(args.cache), indent=1))
    return 0


def main(argv=None) -> None:
    os.environ.setdefault("USE_TORCH", "0")  # graphs and a tokenizer only (see cli/answer.py)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    sys.exit(run_cli(cache_main, argv, interrupted=INTERRUPTED))


if __name__ == "__main__":
    main()
