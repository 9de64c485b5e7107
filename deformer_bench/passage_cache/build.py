"""Building a passage cache: lower_passage once per distinct window not yet stored, a segment at a time.

A build writes segment after segment (each whole, then renamed, then listed in cache.json), so a killed build
keeps every segment it finished and the same command goes on from there. An append is the same walk over new
passages: windows already stored are skipped, new ones go to new segments, old segments are never rewritten.
"""

import fcntl
import itertools
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import PassageCacheError
from ..files import check_output_dir, staged_directory
from .codecs import DTYPES, bytes_per_window, encode
from .key_index import KEY_BYTES, keys_array
from .store import (FORMAT_VERSION, RECORD_FILE, SEGMENT_NAME, check_free_space, check_identity,
                    check_windows_cut,
                    distinct_windows, file_sha256, graph_identity, id_dtype, load_passage_cache, read_record,
                    save_record, segment_name, window_keys)

SEGMENT_WINDOWS = 1024  # a killed build loses at most this many windows' work
LOCK_FILE = ".build.lock"
STAGING = re.compile(r"^\.segment-\d{5,}\.partial-")


class BuildLocked(PassageCacheError):
    """Another build holds the cache directory's lock."""


@contextmanager
def build_lock(directory: Path):
    """One build at a time per cache directory (a second one would list the same segment names twice). The lock
    file goes when the build ends, however it ends: removed while still held, and a build that locked a file
    already removed (it opened it just before) tries again on the one now there, so two builds never hold two
    files at once."""
    path = directory / LOCK_FILE
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise BuildLocked(f"another build is writing {directory}", "wait for it to finish") from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()  # locked a removed file: the build that held it has ended
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            handle.close()


def check_build_location(out_dir: Path, what: str = "the cache directory") -> None:
    """Before any lock or file is made: `out_dir` is a passage cache, an empty folder, or a path where one can be
    made. A file, a broken link or a file on the way, a folder that cannot be written, or a folder of anything
    else (a graph set, a model, your files) is refused, and the refusal leaves nothing there."""
    check_output_dir(out_dir, what)
    if out_dir.is_dir() and not (out_dir / RECORD_FILE).is_file():
        others = sorted(entry.name for entry in out_dir.iterdir() if entry.name != LOCK_FILE)
        if others:
            raise PassageCacheError(f"{out_dir} exists and is not a passage cache (no {RECORD_FILE}; it holds "
                                    f"{others[0]})", "give a new directory, or the directory of a cache")


def remove_unlisted(directory: Path, record: dict) -> None:
    """Segments a killed build renamed into place but never listed, and its half-written staging folders."""
    listed = {entry["name"] for entry in record["segments"]}
    for entry in directory.iterdir():
        if entry.is_dir() and ((SEGMENT_NAME.match(entry.name) and entry.name not in listed)
                               or STAGING.match(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def new_record(graph_set, dtype: str, doc_stride, tokenizer_sha256) -> dict:
    return {"format_version": FORMAT_VERSION, "identity": graph_identity(graph_set), "dtype": dtype,
            "doc_stride": doc_stride, "tokenizer_sha256": tokenizer_sha256, "segments": [], "windows": 0,
            "complete": False, "builds": []}


def existing_record(directory: Path, graph_set, dtype: str, doc_stride, append: bool, tokenizer_sha256) -> dict:
    record = read_record(directory)
    check_identity(record, directory, graph_set)
    if record["dtype"] != dtype:
        raise PassageCacheError(f"passage cache {directory} stores {record['dtype']}, not {dtype}",
                                f"build with --dtype {record['dtype']}, or into a new directory")
    check_windows_cut(record, directory, doc_stride, tokenizer_sha256)
    record["doc_stride"] = record.get("doc_stride") or doc_stride
    record["tokenizer_sha256"] = record.get("tokenizer_sha256") or tokenizer_sha256
    if record.get("complete") and not append:
        raise PassageCacheError(f"passage cache {directory} exists and is complete",
                                "add passages with --append, read it as it is, or give a new directory")
    return record


def compute_states(session, input_ids, attention_mask, batch_size: int, on_batch=None) -> np.ndarray:
    """lower_passage's float32 states [n, Lp, H] of n windows, `batch_size` at a time from the first: the same
    batches whichever engine runs them, so both give the same numbers."""
    parts = []
    for start in range(0, len(input_ids), batch_size):
        parts.append(session.run(None, {"passage_input_ids": input_ids[start:start + batch_size],
                                        "passage_attention_mask": attention_mask[start:start + batch_size]})[0])
        if on_batch is not None:
            on_batch(len(parts[-1]))
    return np.concatenate(parts)


def write_segment(directory: Path, index: int, input_ids, attention_mask, encoded: dict, vocab_size: int) -> dict:
    """One segment written whole under a staging name, renamed, hashed: its record entry."""
    name = segment_name(index)
    keys = keys_array(window_keys(input_ids, attention_mask))  # [n, 16] uint8
    arrays = {"window_key": keys, "passage_input_ids": np.asarray(input_ids).astype(id_dtype(vocab_size)),
              "passage_attention_mask": np.asarray(attention_mask).astype(np.uint8), **encoded}
    with staged_directory(directory / name) as staging:
        for stem, array in arrays.items():
            with open(staging / f"{stem}.npy", "wb") as handle:
                np.save(handle, array)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it is listed: a power loss cannot truncate a listed one
        sha256 = {f"{stem}.npy": file_sha256(staging / f"{stem}.npy") for stem in arrays}
    folder = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename, too
    finally:
        os.close(folder)
    return {"name": name, "windows": int(len(input_ids)), "sha256": sha256}


def build_locally(graph_set, chunks: list, out_dir: Path, session_factory, batch_size: int, dtype: str, listed,
                  progress: bool) -> None:
    """Segment after segment in this process."""
    session = session_factory(graph_set.path("lower_passage")) if chunks else None
    with tqdm(total=sum(len(ids) for _, ids, _ in chunks), desc="passage cache", unit="window",
              disable=not progress) as bar:
        for index, ids, mask in chunks:
            states = compute_states(session, ids, mask, batch_size, bar.update)
            listed(write_segment(out_dir, index, ids, mask, encode(states, dtype),
                                 graph_set.manifest["model"]["vocab_size"]))


def build_passage_cache(graph_set, input_ids, attention_mask, out_dir, session_factory, batch_size: int = 64,
                        progress: bool = True, dtype: str = "float32", doc_stride=None, append: bool = False,
                        segment_windows: int = SEGMENT_WINDOWS, passages=None, tokenizer_sha256=None, engine=None):
    """Store lower_passage's states of every distinct window of ([N, Lp] ids, mask) not yet in `out_dir`: a new
    cache, the rest of a killed build, or (`append`) new passages added to a complete one. Returns the cache.
    `engine`: None (this process, `session_factory`'s sessions) or a RayEngine (ray_engine.py)."""
    return build_passage_cache_from_shards(graph_set, [(input_ids, attention_mask)], out_dir, session_factory,
                                           batch_size, progress, dtype, doc_stride, append, segment_windows,
                                           passages, tokenizer_sha256, engine)


def build_passage_cache_from_shards(graph_set, shards, out_dir, session_factory, batch_size: int = 64,
                                    progress: bool = True, dtype: str = "float32", doc_stride=None,
                                    append: bool = False, segment_windows: int = SEGMENT_WINDOWS, passages=None,
                                    tokenizer_sha256=None, engine=None):
    """build_passage_cache over `shards`, an iterable of ([n, Lp] ids, mask) pairs read one at a time (a corpus
    whose windows would not fit in memory at once: deformer-cache build cuts its passages into shards). Windows
    repeated across shards are stored once; the cache is complete only after the last shard."""
    if dtype not in DTYPES:
        raise PassageCacheError(f"unknown cache dtype {dtype!r}", f"use one of: {', '.join(DTYPES)}")
    if segment_windows < 1:
        raise PassageCacheError(f"segment_windows must be at least 1, got {segment_windows}", "e.g. 1024")
    out_dir = Path(out_dir)
    check_build_location(out_dir)
    shards = iter(shards)
    first_shard = next(shards, None)
    if first_shard is None:
        first_shard = (np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64))
    identity = graph_identity(graph_set)
    per_window = bytes_per_window(dtype, identity["passage_len"], identity["hidden_size"]) + KEY_BYTES \
        + (np.dtype(id_dtype(identity["vocab_size"])).itemsize + 1) * identity["passage_len"]
    created = False
    if not out_dir.exists():
        first, _ = distinct_windows(*first_shard)
        check_free_space(out_dir, per_window * len(first) + 2**20)  # before anything is made
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            out_dir.mkdir()
            created = True  # this process made it: it may remove it again if nothing of it is kept
        except FileExistsError:
            pass  # another build made it meanwhile: the lock below decides
    record = {"segments": []}
    try:
        with build_lock(out_dir):  # everything below reads and writes the record under the lock
            if not (out_dir / RECORD_FILE).is_file() and any(not entry.name.startswith(".")
                                                             for entry in out_dir.iterdir()):
                raise PassageCacheError(f"{out_dir} exists and is not a passage cache", "give a new directory")
            record = (existing_record(out_dir, graph_set, dtype, doc_stride, append, tokenizer_sha256)
                      if (out_dir / RECORD_FILE).is_file() else new_record(graph_set, dtype, doc_stride, tokenizer_sha256))
            # The stored keys' index (sorted arrays); keys new to this build go into a set, so repeats across
            # shards are computed once.
            stored = load_passage_cache(out_dir, graph_set).key_index if record["segments"] else None
            remove_unlisted(out_dir, record)
            # A new or unfinished cache stays incomplete until its last shard is in. An append keeps a complete
            # cache complete: readers go on serving it (its new segments are listed whole, one by one), and a
            # killed append leaves it readable, to be resumed by the same command.
            save_record(out_dir, record)
            started = time.perf_counter()
            next_index = max((int(SEGMENT_NAME.match(entry["name"]).group(1)) + 1 for entry in record["segments"]),
                             default=0)

            def listed(entry):  # the segment counts from here on: a kill after this keeps it
                record["segments"].append(entry)
                record["windows"] += entry["windows"]
                save_record(out_dir, record)

            given, new_windows, stored_hits, seen = 0, 0, set(), set()  # stored_hits: stored keys given again
            for input_ids, attention_mask in itertools.chain([first_shard], shards):
                input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
                keys = window_keys(input_ids, attention_mask)
                rows = stored.lookup(keys) if stored is not None else np.full(len(keys), -1)
                new = []
                for position, (key, row) in enumerate(zip(keys, rows)):
                    if row >= 0:
                        stored_hits.add(key)
                    elif key not in seen:
                        seen.add(key)
                        new.append(position)
                given += len(input_ids)
                new_windows += len(new)
                check_free_space(out_dir, per_window * len(new) + 2**20)
                chunks = [(next_index + number, input_ids[new[start:start + segment_windows]],
                           attention_mask[new[start:start + segment_windows]])
                          for number, start in enumerate(range(0, len(new), segment_windows))]
                next_index += len(chunks)
                if engine is None:
                    build_locally(graph_set, chunks, out_dir, session_factory, batch_size, dtype, listed, progress)
                else:
                    engine.build(graph_set, chunks, out_dir, batch_size, dtype, listed, progress)
            seconds = round(time.perf_counter() - started, 2)
            record["builds"].append({"passages": passages, "windows_given": given,
                                     "distinct_windows": new_windows + len(stored_hits),
                                     "new_windows": new_windows, "seconds": seconds,
                                     "windows_per_second": round(new_windows / seconds, 2) if seconds else None,
                                     "engine": "local" if engine is None else engine.describe(),
                                     "pid": os.getpid()})
            record["complete"], record["build_seconds"] = True, seconds
            save_record(out_dir, record)
    except BaseException as error:  # noqa: BLE001 (re-raised)
        # Only the process that made the directory, and only while it held the lock (a build refused by the lock
        # touches nothing), removes it, and only if no segment was listed in it.
        if created and not isinstance(error, BuildLocked) and not record["segments"]:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return load_passage_cache(out_dir, graph_set)
