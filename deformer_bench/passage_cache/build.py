"""Building a passage cache: lower_passage once per distinct window not yet stored, a segment at a time.

A build writes segment after segment (each whole, then renamed, then listed in cache.json), so a killed build
keeps every segment it finished and the same command goes on from there. An append is the same walk over new
passages: windows already stored are skipped, new ones go to new segments, old segments are never rewritten.

Before any work a build names what it will store (its plan: the sha256 of its distinct window keys, sorted, and
their count) and records it in cache.json as the unfinished build, with the command that started it. An
unfinished cache goes on only with a build of the same plan (the same passages, cut the same way, for the same
graph); any other build is refused with that command. The cache is marked complete only when the walk has stored
every window of the plan, and the windows it walked are the plan's.

A learned codec (dtype pq, rq or binary) is trained first, before any segment: build_codec.py. The segments are
written by a build engine (engines.py: this process's, or ray_engine.py's), each the same way (segments.py); one
build at a time per directory (lock.py).
"""

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts.errors import Interrupted, PassageCacheError
from ..files import check_output_dir
from .build_codec import cache_codec, check_same_codec, requested_codec, train_codec
from .cache_files import id_dtype
from .codecs import DTYPES, bytes_per_window
from .engines import BuildEngine, LocalEngine
from .key_index import KEY_BYTES, KeySet, keys_array
from .lock import LOCK_FILE, BuildLocked, build_lock
from .schema import CODEBOOK_FOLDER, FORMAT_VERSION, LEARNED_DTYPES, SEGMENT_NAME
from .store import (RECORD_FILE, check_free_space, check_identity, check_windows_cut, graph_identity,
                    load_passage_cache, read_record, resume_hint, save_record, unlisted_segments, window_keys)

SEGMENT_WINDOWS = 1024  # a killed build loses at most this many windows' work
# A learned codec's training sample: ~1,000 windows hold ~150k token states at 224 tokens (SQuAD's windows are
# ~2/3 full), enough for pq's 256 sub-centroids and rq's 1,024 centroids (quantizers.MIN_POINTS_PER_CENTROID)
TRAIN_WINDOWS = 1000
STAGING = re.compile(r"^\.segment-\d{5,}\.partial-")


@dataclass(frozen=True)
class CacheCommands:
    """Commands of the caller's CLI that a cache names: `start`, the command that builds the cache (recorded when
    it starts a build, named when a build of other passages is refused there), and `add_missing`, the hint for
    windows a cache lacks. None: generic words."""

    start: str = None
    add_missing: str = None


def check_build_location(out_dir: Path, what: str = "the cache directory") -> None:
    """Before any lock or file is made: `out_dir` is a passage cache, an empty folder, or a path where one can be
    made. A file, a broken link or a file on the way, a folder that cannot be written, or a folder of anything
    else (a graph set, a model, your files) is refused, and the refusal leaves nothing there."""
    check_output_dir(out_dir, what)
    if out_dir.is_dir() and not (out_dir / RECORD_FILE).is_file():
        others = sorted(entry.name for entry in out_dir.iterdir() if entry.name not in LEFT_BY_A_KILLED_START)
        if others:
            raise PassageCacheError(f"{out_dir} exists and is not a passage cache (no {RECORD_FILE}; it holds "
                                    f"{others[0]})", "give a new directory, or the directory of a cache")


# What a build killed before its first record leaves (a new build there replaces them): its lock, a learned
# codec's codebook
LEFT_BY_A_KILLED_START = (LOCK_FILE, CODEBOOK_FOLDER)


def remove_unlisted(directory: Path, record: dict) -> None:
    """Segments a killed build renamed into place but never listed, and its half-written staging folders."""
    for name in unlisted_segments(directory, record):
        shutil.rmtree(directory / name, ignore_errors=True)
    for entry in directory.iterdir():
        if entry.is_dir() and STAGING.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


class WindowSet:
    """The distinct window keys of a walk over shards, collected shard by shard (16 bytes a window); its digest
    names them: the sha256 of the distinct keys in sorted order, whatever the order or repeats of the windows."""

    def __init__(self):
        self.parts, self.given = [], 0

    def add(self, keys) -> None:
        keys = keys_array(keys)
        self.given += len(keys)
        self.parts.append(np.unique(keys.view(np.dtype((np.void, KEY_BYTES))).ravel()))  # one 16-byte item a key

    def distinct(self) -> np.ndarray:
        """The distinct keys, sorted, as 16-byte items."""
        return np.unique(np.concatenate(self.parts)) if self.parts else np.zeros(0, np.dtype((np.void, KEY_BYTES)))

    def digest(self) -> tuple:
        """(sha256, distinct windows)."""
        distinct = self.distinct()
        return hashlib.sha256(distinct.tobytes()).hexdigest(), len(distinct)

    def draw(self, count: int, seed: int) -> frozenset:
        """A seeded draw of `count` distinct keys (all of them if there are fewer), as bytes."""
        distinct = self.distinct()
        picked = np.random.default_rng(seed).permutation(len(distinct))[:count]
        return frozenset(distinct[index].tobytes() for index in picked)


@dataclass(frozen=True)
class BuildPlan:
    """What a build will store: the digest of its distinct windows (WindowSet.digest), their count, and the
    windows given (with repeats)."""

    windows_sha256: str
    windows: int
    windows_given: int
    sample: frozenset = frozenset()  # keys of the windows a learned codec trains on


def plan_build(shards, sample_windows: int = 0, seed: int = 0) -> BuildPlan:
    """The plan of these shards' windows, read once (a first pass before any work), with a seeded draw of
    `sample_windows` of them to train a codec on."""
    windows = WindowSet()
    for input_ids, attention_mask in shards:
        windows.add(window_keys(input_ids, attention_mask))
    return BuildPlan(*windows.digest(), windows.given, windows.draw(sample_windows, seed) if sample_windows else
                     frozenset())


def new_record(graph_set, dtype: str, doc_stride, tokenizer_sha256) -> dict:
    return {"format_version": FORMAT_VERSION, "identity": graph_identity(graph_set), "dtype": dtype,
            "doc_stride": doc_stride, "tokenizer_sha256": tokenizer_sha256, "segments": [], "windows": 0,
            "complete": False, "builds": [], "unfinished_build": None, "codec": None}


def existing_record(directory: Path, graph_set, dtype, doc_stride, append: bool, tokenizer_sha256,
                    plan: BuildPlan, codec=None) -> dict:
    """The record of the cache in `directory`, if this build may go on in it: the same graph, and either the
    same plan as the unfinished build it holds, or (`append`) a complete cache, its dtype and windows cut the
    same way. `dtype` None: the cache's."""
    record = read_record(directory)
    check_identity(record, directory, graph_set)
    unfinished = record["unfinished_build"]
    resuming = not record["complete"]
    if resuming and unfinished["windows_sha256"] != plan.windows_sha256:
        raise PassageCacheError(
            f"passage cache {directory} holds an unfinished build of other windows: it was started for "
            f"{unfinished['windows']:,} distinct windows and holds {record['windows']:,} of them; these passages "
            f"(and settings) give {plan.windows:,}{' others' if plan.windows == unfinished['windows'] else ''}",
            f"{resume_hint(unfinished)}; or build these passages into a new directory")
    if dtype is not None and record["dtype"] != dtype:
        raise PassageCacheError(f"passage cache {directory} stores {record['dtype']}, not {dtype}",
                                resume_hint(unfinished) if resuming
                                else f"build with --dtype {record['dtype']}, or into a new directory")
    check_same_codec(record, directory, codec)
    check_windows_cut(record, directory, doc_stride, tokenizer_sha256)
    record["doc_stride"] = record.get("doc_stride") or doc_stride
    record["tokenizer_sha256"] = record.get("tokenizer_sha256") or tokenizer_sha256
    if not resuming and not append:
        raise PassageCacheError(f"passage cache {directory} exists and is complete",
                                "add passages with --append, read it as it is, or give a new directory")
    return record


def unfinished_build(plan: BuildPlan, append: bool, command) -> dict:
    return {"windows_sha256": plan.windows_sha256, "windows": plan.windows, "append": append, "command": command}


def build_passage_cache(graph_set, input_ids, attention_mask, out_dir, session_factory, batch_size: int = 64,
                        progress: bool = True, dtype: str = None, doc_stride=None, append: bool = False,
                        segment_windows: int = SEGMENT_WINDOWS, passages=None, tokenizer_sha256=None,
                        engine: BuildEngine = None, command: str = None, keep_unfinished: bool = True,
                        **codec_options):
    """Store lower_passage's states of every distinct window of ([N, Lp] ids, mask) not yet in `out_dir`: a new
    cache, the rest of a killed build of the same windows, or (`append`) new passages added to a complete one.
    Returns the cache. `engine`: what writes the segments (engines.py); None: this process, on `session_factory`'s
    sessions (LocalEngine). The other options (a learned codec's `codec_options` among them):
    build_passage_cache_from_shards."""
    shard = (input_ids, attention_mask)
    return build_passage_cache_from_shards(graph_set, lambda: [shard], out_dir, session_factory, batch_size, progress,
                                           dtype, doc_stride, append, segment_windows, passages, tokenizer_sha256,
                                           engine, command, keep_unfinished, **codec_options)


def build_passage_cache_from_shards(graph_set, shards, out_dir, session_factory, batch_size: int = 64,
                                    progress: bool = True, dtype: str = None, doc_stride=None,
                                    append: bool = False, segment_windows: int = SEGMENT_WINDOWS, passages=None,
                                    tokenizer_sha256=None, engine: BuildEngine = None, command: str = None,
                                    keep_unfinished: bool = True, codec_settings: dict = None,
                                    train_windows: int = TRAIN_WINDOWS, train_seed: int = 0, metric=None):
    """build_passage_cache over `shards`: ([n, Lp] ids, mask) pairs read one at a time (a corpus whose windows
    would not fit in memory at once: deformer-cache build cuts its passages into shards), given as a function that
    returns an iterable of them, or as a list. They are read twice: to plan the build (every window's key, before
    any work), then to build. Windows repeated across shards are stored once; the cache is complete only after the
    last shard.

    `dtype`: float32, float16 or int8; None: the cache's own (float32 for a new one). `command`: the command that
    started this build, recorded in cache.json so that a build refused there later can name it. `keep_unfinished`:
    a build that fails or is interrupted keeps the segments it listed, to go on from (deformer-cache build);
    False: a cache this call started is removed again (deformer-answer and deformer-eval, for which the cache is
    a means, not the product), and one it went on with keeps what it had and gained.

    A learned codec (`dtype` pq, rq or binary, `codec_settings` its settings: quantizers/) is trained on the
    states of a seeded draw (`train_seed`) of `train_windows` distinct windows (`metric`: pq's fisher transform's
    [H, H] metric, sensitivity.py), computed on `session_factory`'s sessions whatever the engine; an append or
    resume uses the cache's codebook."""
    check_build_settings(dtype, segment_windows)
    engine = engine if engine is not None else LocalEngine(session_factory)
    identity = graph_identity(graph_set)
    codec = requested_codec(dtype, codec_settings, identity, engine, metric, out_dir)  # before any file
    shards, out_dir = shard_source(shards), Path(out_dir)
    check_build_location(out_dir)
    plan = plan_build(shards(), train_windows if codec is not None else 0, train_seed)
    created = make_cache_directory(out_dir, lambda: stored_bytes(identity, dtype or "float32", codec) * plan.windows
                                   + 2**20)
    record, new = {"segments": []}, False
    try:
        with build_lock(out_dir):  # everything below reads and writes the record under the lock
            if (out_dir / RECORD_FILE).is_file():
                record = existing_record(out_dir, graph_set, dtype, doc_stride, append, tokenizer_sha256, plan,
                                         codec if codec_settings else None)
                codec = cache_codec(out_dir, record, engine)  # the cache's own codebook (checked)
            else:
                check_only_leftovers(out_dir)
                record, new = new_record(graph_set, dtype or "float32", doc_stride, tokenizer_sha256), True
                if codec is None and dtype in LEARNED_DTYPES:  # the cache asked for is gone: its defaults, checked
                    codec = requested_codec(dtype, codec_settings, identity, engine, metric)
                if codec is not None:  # before the record: a refused training leaves nothing
                    record["codec"] = train_codec(graph_set, shards(), plan.sample, out_dir, codec, session_factory,
                                                  batch_size, train_seed, metric)
            stored = start_walk(out_dir, graph_set, record, plan, new, command)
            started = time.perf_counter()
            walk = store_new_windows(graph_set, shards(), out_dir, record, stored, batch_size, segment_windows,
                                     engine, progress, codec)
            check_walked_the_plan(walk, plan)
            seconds = round(time.perf_counter() - started, 2)
            record_finished_build(out_dir, record, build_entry(walk, plan, passages, seconds, engine))
    except BaseException as error:  # noqa: BLE001 (re-raised)
        clean_up_failed_build(error, out_dir, record, created, new, keep_unfinished)
        raise
    return load_passage_cache(out_dir, graph_set)


def check_build_settings(dtype, segment_windows: int) -> None:
    if dtype is not None and dtype not in DTYPES + LEARNED_DTYPES:
        raise PassageCacheError(f"unknown cache dtype {dtype!r}", f"use one of: {', '.join(DTYPES + LEARNED_DTYPES)}")
    if segment_windows < 1:
        raise PassageCacheError(f"segment_windows must be at least 1, got {segment_windows}", "e.g. 1024")


def make_cache_directory(out_dir: Path, needed_bytes) -> bool:
    """`out_dir` made if it is not there, once the space the build needs (`needed_bytes()`: asked only for a new
    directory, whose codec is known) is checked; True when this process made it (it may remove it again if
    nothing of it is kept)."""
    if out_dir.exists():
        return False
    check_free_space(out_dir, needed_bytes())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        out_dir.mkdir()
        return True
    except FileExistsError:
        return False  # another build made it meanwhile: the lock decides


def check_only_leftovers(out_dir: Path) -> None:
    """Under the lock, in a directory without a record: nothing but what a killed start leaves."""
    if any(not entry.name.startswith(".") and entry.name not in LEFT_BY_A_KILLED_START
           for entry in out_dir.iterdir()):
        raise PassageCacheError(f"{out_dir} exists and is not a passage cache", "give a new directory")


def start_walk(out_dir: Path, graph_set, record: dict, plan: BuildPlan, new: bool, command):
    """The record made ready for the walk and saved: this build's plan as its unfinished build (an unfinished one
    keeps the command that started it), and what a killed build left unlisted removed. Returns the index of the
    keys stored (sorted arrays), None when none is: keys new to this build go into a set, so repeats across shards
    are computed once."""
    if new or record["complete"]:
        record["unfinished_build"] = unfinished_build(plan, not new, command)
    stored = load_passage_cache(out_dir, graph_set).key_index if record["segments"] else None
    remove_unlisted(out_dir, record)
    # A new or unfinished cache stays incomplete until its last shard is in. An append keeps a complete cache
    # complete: readers go on serving it (its new segments are listed whole, one by one), and a killed append leaves
    # it readable, to be resumed by the same command.
    save_record(out_dir, record)
    return stored


def check_walked_the_plan(walk, plan: BuildPlan) -> None:
    """Only the build that was planned marks the cache complete."""
    walked_sha256, walked = walk.windows.digest()
    if walked_sha256 != plan.windows_sha256:
        raise PassageCacheError(
            f"the passages changed while the build read them: {plan.windows:,} distinct windows when "
            f"planned, {walked:,} (or other ones) when built", "leave them unchanged "
            "while a build reads them; the cache keeps the segments written: give the passages as they "
            "were to go on, or build the changed ones into a new directory")


def build_entry(walk, plan: BuildPlan, passages, seconds: float, engine: BuildEngine) -> dict:
    """This build's entry in the record's `builds` (schema.BUILD)."""
    return {"passages": passages, "windows_given": walk.windows.given, "distinct_windows": plan.windows,
            "new_windows": walk.new_windows, "seconds": seconds,
            "windows_per_second": round(walk.new_windows / seconds, 2) if seconds else None,
            "engine": engine.describe(), "pid": os.getpid()}


def record_finished_build(out_dir: Path, record: dict, entry: dict) -> None:
    """The build listed and the cache marked complete, its unfinished build cleared."""
    record["builds"].append(entry)
    record["complete"], record["build_seconds"], record["unfinished_build"] = True, entry["seconds"], None
    save_record(out_dir, record)


def shard_source(shards):
    """A function returning the shards afresh at each call, from such a function or a list of shards."""
    if callable(shards):
        return shards
    if iter(shards) is shards:
        raise TypeError("shards are read twice (to plan the build, then to build it): give a list of them, or a "
                        "function returning an iterable of them, not an iterator")
    return lambda: shards


def stored_bytes(identity: dict, dtype: str, codec=None) -> int:
    """Bytes one stored window takes on disk: its states, key, ids and mask (a learned codec's: codes, key, ids,
    length)."""
    ids = np.dtype(id_dtype(identity["vocab_size"])).itemsize * identity["passage_len"]
    if codec is not None:
        return int(np.ceil(codec.code_bytes_per_token() * identity["passage_len"])) + KEY_BYTES + ids + 2
    return bytes_per_window(dtype, identity["passage_len"], identity["hidden_size"]) + KEY_BYTES + ids \
        + identity["passage_len"]


@dataclass
class Walk:
    windows: WindowSet  # every window walked
    new_windows: int  # computed and stored by this build


def store_new_windows(graph_set, shards, out_dir: Path, record: dict, stored, batch_size: int, segment_windows: int,
                      engine: BuildEngine, progress: bool, codec=None) -> Walk:
    """The walk: shard after shard, the windows neither `stored` (the index of the cache's keys at the start) nor
    seen earlier in this walk are computed and written as segments, each listed in the record as it is written."""
    per_window = stored_bytes(record["identity"], record["dtype"], codec)
    next_index = max((int(SEGMENT_NAME.match(entry["name"]).group(1)) + 1 for entry in record["segments"]),
                     default=0)

    def listed(entry):  # the segment counts from here on: a kill after this keeps it
        record["segments"].append(entry)
        record["windows"] += entry["windows"]
        save_record(out_dir, record)

    walk, seen = Walk(WindowSet(), 0), KeySet()  # this build's new keys: sorted arrays, 16 bytes a key
    for input_ids, attention_mask in shards:
        input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
        keys = keys_array(window_keys(input_ids, attention_mask))
        walk.windows.add(keys)
        rows = stored.lookup(keys) if stored is not None else np.full(len(keys), -1)
        unstored = np.flatnonzero(rows < 0)
        new = unstored[seen.add_new(keys[unstored])].tolist()  # in the order the windows came, each once
        walk.new_windows += len(new)
        check_free_space(out_dir, per_window * len(new) + 2**20)
        chunks = [(next_index + number, input_ids[new[start:start + segment_windows]],
                   attention_mask[new[start:start + segment_windows]])
                  for number, start in enumerate(range(0, len(new), segment_windows))]
        next_index += len(chunks)
        engine.build(graph_set, chunks, out_dir, batch_size, record["dtype"], listed, progress, codec)
    return walk


def clean_up_failed_build(error: BaseException, out_dir: Path, record: dict, created: bool, new: bool,
                          keep_unfinished: bool) -> None:
    """What a build that raised `error` leaves (discard_unfinished); an interrupt that leaves nothing raises
    Interrupted saying so."""
    # A build refused by the lock touches nothing: the directory is another build's.
    if not isinstance(error, BuildLocked) and discard_unfinished(out_dir, record, created, new, keep_unfinished) \
            and keep_unfinished and isinstance(error, KeyboardInterrupt) and not isinstance(error, Interrupted):
        # deformer-cache's usual line says the finished segments are kept: here there are none, nor the folder
        # (deformer-answer's and -eval's, keep_unfinished False, already say that nothing was written)
        raise Interrupted(f"interrupted: nothing was written (no segment was finished; {out_dir}, which this "
                          "build made, is removed)") from None


def discard_unfinished(out_dir: Path, record: dict, created: bool, new: bool, keep_unfinished: bool) -> bool:
    """What a failed or interrupted build removes: the directory it made, when nothing of it is kept (no segment
    listed, or not `keep_unfinished`); without `keep_unfinished`, the record and segments it started in a directory
    it found empty. A cache it went on with (another build's) keeps what it had and gained. True when the
    directory it made is removed."""
    if created and (not keep_unfinished or not record["segments"]):
        shutil.rmtree(out_dir, ignore_errors=True)
        return True
    elif new and not keep_unfinished:
        for entry in record["segments"]:
            shutil.rmtree(out_dir / entry["name"], ignore_errors=True)
        shutil.rmtree(out_dir / CODEBOOK_FOLDER, ignore_errors=True)
        (out_dir / RECORD_FILE).unlink(missing_ok=True)
    return False
