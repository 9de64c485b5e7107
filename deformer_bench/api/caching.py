"""build_cache(CacheBuildRequest) -> CacheBuildResult: lower_passage's states of every passage window, stored once
in a passage cache (what deformer-cache build does); verify_cache and cache_info (deformer-cache verify, info)."""

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..answer import InputFileError, graph_set_tokenizer, iter_passages, passage_examples, passages_file
from ..contracts.bounds import MAX_BATCH_SIZE
from ..contracts.errors import DeformerBenchError
from ..contracts.manifest import load_graph_set
from ..files import check_distinct_paths, command_line, tokenizer_input
from ..passage_cache import build_passage_cache_from_shards, bytes_per_window, load_passage_cache
from ..passage_cache.build import TRAIN_WINDOWS, check_build_location
from ..passage_cache.build_codec import requested_codec
from ..passage_cache.cache_files import codebook_path
from ..passage_cache.engines import BuildEngine, LocalEngine
from ..passage_cache.ray_engine import RayEngine, import_ray
from ..passage_cache.quantizers import CODECS
from ..passage_cache.schema import LEARNED_DTYPES
from ..passage_cache.store import graph_identity, tokenizer_sha256, unlisted_segments
from ..serving import evaluation_session
from ..squad.features import check_doc_stride, featurize
from .common import PathFields, check_count

# Counts past these are typos: they would not fit in memory (a batch, a segment: ~350 KB a window in float32 at
# 224 x 384), overflow what they are handed to (itertools.islice takes at most sys.maxsize), or start more Ray
# actors than a cluster has cores.
MAX_SEGMENT_WINDOWS = 1_000_000
MAX_SHARD_PASSAGES = 1_000_000_000
MAX_WORKERS = 1024
MAX_TRAIN_WINDOWS = 1_000_000  # ~1.4 GB of float32 token states at 224 x 384 (2/3 full): held whole to train
MAX_TRAIN_SEED = 2**31 - 1  # the sample's numpy draw and faiss's k-means (a C int: 2^31 raised OverflowError)
STATE_FILES = ("passage_hidden.npy", "passage_scale.npy")


@dataclass
class CacheBuildRequest(PathFields):
    """One field per deformer-cache build option (README, "Cache"): the graph set (and `variant`) whose
    lower_passage runs, the passages file, the cache directory `out`; `engine` local or ray (`address`,
    `workers`)."""

    graphs: Path
    passages: Path
    out: Path
    variant: str = None
    dtype: str = None
    doc_stride: int = 128
    append: bool = False
    tokenizer: Path = None
    batch_size: int = 64
    segment_windows: int = 1024
    shard_passages: int = 20000
    engine: str = "local"
    address: str = None
    workers: int = None
    progress: bool = True
    # a learned codec (dtype pq, rq or binary): its settings (quantizers.parse_settings; None: the codec's
    # defaults, or with append the cache's), the pq Fisher transform's metric (an [H, H] .npy), the training sample
    # (None: TRAIN_WINDOWS windows, seed 0; given with another dtype, refused: they would change nothing)
    codec_settings: dict = None
    codec_metric: Path = None
    train_windows: int = None
    train_seed: int = None


@dataclass
class CacheBuildResult:
    """The cache built: its passages, this build's record (cache.json's last `builds` entry) and its size."""

    cache: Path
    passages: int
    build: dict
    cache_windows: int
    dtype: str
    shards: int

    def as_json(self) -> dict:
        return {"cache": str(self.cache), "passages": self.passages, "passage_windows": self.build["windows_given"],
                **self.build, "cache_windows": self.cache_windows, "dtype": self.dtype, "shards": self.shards}


class PassageFile:
    """The passages of a build (answer.PASSAGES_FILE, the file deformer-answer reads), a shard at a time. A JSON
    Lines file is read twice, one line in memory at a time: a first pass checks every line and counts (a bad line
    at passage 15M is refused before any work, not after hours of it), the second yields the shards. A SQuAD
    document is one JSON document, read whole: its distinct paragraphs get ids p00000, p00001, ...; a pipe can be
    read once only, so it is held whole too."""

    def __init__(self, path: Path, tokenizer):
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
        # ids were checked unique by the first pass (answer.unique_id_records); the second checks them no more
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


def build_cache(request: CacheBuildRequest) -> CacheBuildResult:
    """Build (or go on with, or --append to) the passage cache `request.out`."""
    for option, value, maximum in (("--batch-size", request.batch_size, MAX_BATCH_SIZE),
                                   ("--segment-windows", request.segment_windows, MAX_SEGMENT_WINDOWS),
                                   ("--shard-passages", request.shard_passages, MAX_SHARD_PASSAGES),
                                   ("--workers", request.workers, MAX_WORKERS),
                                   ("--train-windows", request.train_windows, MAX_TRAIN_WINDOWS)):
        check_count(option, value, maximum)
    if request.train_seed is not None and not 0 <= request.train_seed <= MAX_TRAIN_SEED:
        raise DeformerBenchError(f"--train-seed must be 0 to 2^31-1 (a numpy and faiss seed), got "
                                 f"{request.train_seed}", "give a smaller seed")
    # Before any lock, file or Ray: where the cache goes, and that it is none of what the build reads.
    check_distinct_paths({"--out": request.out}, {"the graph set": request.graphs,
                                                  "the passages file": request.passages,
                                                  **({"--codec-metric": request.codec_metric}
                                                     if request.codec_metric else {}),
                                                  **tokenizer_input(request.graphs, request.tokenizer)})
    check_build_location(request.out, "--out")
    engine = requested_engine(request)
    check_codec_options(request)
    graph_set = load_graph_set(request.graphs, request.variant)
    check_doc_stride(graph_set.deformer.passage_len, request.doc_stride)
    tokenizer = graph_set_tokenizer(graph_set, request.tokenizer)
    metric = checked_codec_metric(request, graph_set, engine)
    passages = PassageFile(request.passages, tokenizer)
    shard_count = -(-passages.count // request.shard_passages)
    passes = itertools.count()

    def shards():  # one shard's passages and windows in memory at a time; read twice: plan, then build
        planning = next(passes) == 0
        for number, shard in enumerate(passages.shards(request.shard_passages)):
            windows = featurize(passage_examples(dict(shard)), tokenizer, graph_set.deformer.question_len,
                                graph_set.deformer.passage_len, request.doc_stride,
                                progress=request.progress and shard_count == 1 and not planning)
            if request.progress and shard_count > 1:
                print(f"{'planning' if planning else 'building'} shard {number + 1} of {shard_count}: "
                      f"{len(windows):,} windows", file=sys.stderr, flush=True)
            yield windows.passage_input_ids, windows.passage_attention_mask

    with engine:  # a local Ray it started stops here, also when the build fails or is interrupted
        cache = build_passage_cache_from_shards(
            graph_set, shards, request.out, evaluation_session, request.batch_size, request.progress,
            dtype=request.dtype, doc_stride=request.doc_stride, append=request.append,
            segment_windows=request.segment_windows, passages=passages.count,
            tokenizer_sha256=tokenizer_sha256(tokenizer), engine=engine, command=build_command_line(request),
            codec_settings=request.codec_settings, train_windows=train_windows(request),
            train_seed=request.train_seed or 0, metric=metric)
    return CacheBuildResult(request.out, passages.count, cache.info["builds"][-1], cache.windows, cache.info["dtype"],
                            shard_count)


def requested_engine(request: CacheBuildRequest) -> BuildEngine:
    """--engine's engine: this process's, on the evaluation sessions, or Ray's (its install checked before any
    work: a missing Ray is one clear error)."""
    if request.engine == "local" and (request.address or request.workers):
        raise DeformerBenchError("--address and --workers belong to --engine ray", "add --engine ray, or drop them")
    if request.engine == "ray":
        import_ray()
        return RayEngine(request.address, request.workers)
    return LocalEngine(evaluation_session)


def build_command_line(request: CacheBuildRequest) -> str:
    """This build as a command that goes on with it from any directory (the options that decide what it stores)."""
    return command_line("deformer-cache", "build", request.graphs,
                        *(("--variant", request.variant) if request.variant else ()), "--passages", request.passages,
                        "--out", request.out,
                        *(("--dtype", request.dtype) if request.dtype else ()),
                        *(("--codec-settings", ",".join(f"{key}={value}" for key, value in request.codec_settings.items()))
                          if request.codec_settings else ()),
                        *(("--codec-metric", request.codec_metric) if request.codec_metric else ()),
                        *(("--train-windows", train_windows(request), "--train-seed", request.train_seed or 0)
                          if request.dtype in LEARNED_DTYPES else ()),
                        "--doc-stride", request.doc_stride,
                        *(("--tokenizer", request.tokenizer) if request.tokenizer else ()),
                        "--append" if request.append else None)


def check_codec_options(request: CacheBuildRequest) -> None:
    """A learned codec's training options are refused with another dtype (they would change nothing), as its
    settings and metric are (passage_cache.build.requested_codec)."""
    given = [option for option, value in (("--train-windows", request.train_windows),
                                          ("--train-seed", request.train_seed)) if value is not None]
    if given and request.dtype not in LEARNED_DTYPES:
        stored = request.dtype or "the cache's own"
        verb = "belong" if len(given) > 1 else "belongs"
        raise DeformerBenchError(f"{' and '.join(given)} {verb} to a learned codec's training, and the dtype is "
                                 f"{stored}", "give --dtype pq, rq or binary, or drop them")


def checked_codec_metric(request: CacheBuildRequest, graph_set, engine):
    """--codec-metric's array (or None), once the codec asked for, its settings and the metric are checked
    (build.requested_codec): before the passages' checking pass, minutes at corpus scale (the build checks them
    again)."""
    metric = codec_metric(request.codec_metric)
    requested_codec(request.dtype, request.codec_settings, graph_identity(graph_set), engine, metric, request.out)
    return metric


def train_windows(request: CacheBuildRequest) -> int:
    return TRAIN_WINDOWS if request.train_windows is None else request.train_windows


def codec_metric(path: Path):
    """--codec-metric's [H, H] array, or None."""
    if path is None:
        return None
    try:
        metric = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DeformerBenchError(f"--codec-metric {path} is not a readable .npy array ({error})",
                                 "give the metric the fisher stage wrote (fisher.npy)") from None
    if not isinstance(metric, np.ndarray):  # an .npz archive loads as a mapping of arrays
        metric.close()
        raise DeformerBenchError(f"--codec-metric {path} is an .npz archive, not one .npy array",
                                 "give the metric the fisher stage wrote (fisher.npy)")
    return metric


def cache_info(directory: Path) -> dict:
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
    codebook_bytes = sum(codebook_path(directory, name).stat().st_size
                         for name in (record["codec"] or {}).get("codebook", {}))
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


def state_bytes_per_window(cache) -> float:
    """What one window's states take as stored: codecs.bytes_per_window, or a learned codec's codes and scales."""
    identity = cache.info["identity"]
    if cache.codec is not None:
        return cache.codec.code_bytes_per_token() * identity["passage_len"]
    return bytes_per_window(cache.info["dtype"], identity["passage_len"], identity["hidden_size"])


def verify_cache(cache_dir: Path, graphs: Path = None, variant: str = None) -> dict:
    """Every segment's sha256 and no unlisted segment folder; with `graphs` (and its `variant`), that the cache
    was built from that graph set."""
    cache_dir = Path(cache_dir)
    if variant is not None and graphs is None:
        raise DeformerBenchError("--variant picks a variant of the graph set given with --graphs, and no --graphs "
                                 "was given", "give --graphs OUT/ too, or drop --variant")
    graph_set = None
    if graphs is not None:
        graph_set = load_graph_set(graphs, variant)
    cache = load_passage_cache(cache_dir, graph_set)  # structure and (with --graphs) identity
    started = time.perf_counter()
    cache.verify()  # every segment's sha256, and no segment folder that no entry lists
    seconds = time.perf_counter() - started
    checked = sum((cache_dir / segment.name / name).stat().st_size for segment in cache.segments
                  for name in segment.sha256)
    return {"cache": str(cache_dir), "ok": True, "segments": len(cache.segments), "windows": cache.windows,
            "complete": cache.info.get("complete"), "checked_bytes": checked, "seconds": round(seconds, 3),
            "identity_checked": graph_set is not None}
