"""A real passage cache: `lower_passage` runs once per distinct passage window, offline; the online path reads it.

DeFormer's passage states at layer k never see the question, so every question asked of a passage can share
them. On SQuAD a paragraph has ~5 questions and each of its windows is the same token sequence for all of
them: the dev set's 12,597 (question, window) pairs hold only 2,438 distinct windows (MiniLM tokens, 224-token
windows, stride 128).

On disk a cache is a directory, written whole or not at all:
  passage_cache.json          format version, the lower_passage graph's sha256 and the model fingerprint it
                              was built with, lengths, hidden size, count, build time
  passage_input_ids.npy       [U, Lp] int64   the key: each distinct window's token ids ...
  passage_attention_mask.npy  [U, Lp] int64   ... and mask
  passage_hidden.npy          [U, Lp, H] float32, lower_passage's output per window (memory-mapped on load)
"""

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import PassageCacheError
from .files import staged_directory
from .runtime.cached_states import gather_rows

FORMAT_VERSION = 1
INFO_FILE = "passage_cache.json"
ARRAYS = ("passage_input_ids", "passage_attention_mask", "passage_hidden")


def window_keys(input_ids: np.ndarray, attention_mask: np.ndarray) -> list:
    """One hashable key per window ([N, Lp] ids and mask): the exact tokens, so equal keys mean equal states."""
    input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
    return [ids.tobytes() + mask.tobytes() for ids, mask in zip(input_ids, attention_mask)]


def distinct_windows(input_ids: np.ndarray, attention_mask: np.ndarray):
    """(first, row_of): `first` [U] indexes each distinct window's first occurrence; `row_of` [N] maps every
    window to its distinct row, so input_ids[first][row_of] == input_ids."""
    row_by_key, first, row_of = {}, [], []
    for index, key in enumerate(window_keys(input_ids, attention_mask)):
        if key not in row_by_key:
            row_by_key[key] = len(first)
            first.append(index)
        row_of.append(row_by_key[key])
    return np.asarray(first, dtype=np.int64), np.asarray(row_of, dtype=np.int64)


@dataclass
class PassageCache:
    directory: Path
    info: dict
    input_ids: np.ndarray  # [U, Lp]
    attention_mask: np.ndarray  # [U, Lp]
    hidden: np.ndarray  # [U, Lp, H], memory-mapped

    def rows(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[N] cache rows of these windows; every window must be in the cache."""
        row_by_key = {key: row for row, key in enumerate(window_keys(self.input_ids, self.attention_mask))}
        keys = window_keys(input_ids, attention_mask)
        missing = sum(key not in row_by_key for key in keys)
        if missing:
            raise PassageCacheError(
                f"passage cache {self.directory} lacks {missing} of the {len(keys)} passage windows asked for "
                f"(it holds {len(row_by_key)}, built for other passages or another doc stride)",
                "give a new --passage-cache directory to build one for these passages")
        return np.asarray([row_by_key[key] for key in keys], dtype=np.int64)

    def passage_hidden(self, rows: np.ndarray) -> np.ndarray:
        """[B, Lp, H] cached passage states of these rows, in memory."""
        return gather_rows(self.hidden, rows)


def graph_identity(graph_set) -> dict:
    """What a cache must match: the lower_passage graph it came from (and, for the message, the model)."""
    manifest = graph_set.manifest
    return {"lower_passage_sha256": manifest["graphs"]["lower_passage"]["sha256"],
            "model_fingerprint_sha256": manifest["model"]["fingerprint_sha256"],
            "layer": manifest["deformer"]["layer"], "passage_len": manifest["deformer"]["passage_len"],
            "hidden_size": manifest["model"]["hidden_size"]}


def human_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} bytes"


def check_free_space(out_dir: Path, needed_bytes: int) -> None:
    """Refuse up front: a memory-mapped file on a full disk fails with SIGBUS mid-write, not with an error."""
    parent = next(folder for folder in (out_dir, *out_dir.parents) if folder.exists())
    free = shutil.disk_usage(parent).free
    if free < needed_bytes:
        raise PassageCacheError(f"the passage cache needs {needed_bytes:,} bytes ({human_bytes(needed_bytes)}) "
                                f"and {parent} has {free:,} free",
                                "give --passage-cache a directory on a disk with room (or set TMPDIR)")


def build_passage_cache(graph_set, input_ids, attention_mask, out_dir, session_factory, batch_size: int = 64,
                        progress: bool = True) -> PassageCache:
    """Run lower_passage once per distinct window of ([N, Lp] ids, mask) and write the cache to `out_dir`."""
    if Path(out_dir).exists():
        raise PassageCacheError(f"{out_dir} exists", "give a new directory for the cache, or load this one")
    identity = graph_identity(graph_set)
    input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
    first, _ = distinct_windows(input_ids, attention_mask)
    distinct_ids, distinct_mask = input_ids[first], attention_mask[first]
    shape = (len(first), identity["passage_len"], identity["hidden_size"])
    check_free_space(Path(out_dir), 4 * int(np.prod(shape)) + distinct_ids.nbytes + distinct_mask.nbytes)
    session = session_factory(graph_set.path("lower_passage"))
    started = time.perf_counter()
    with staged_directory(Path(out_dir)) as staging:
        hidden = np.lib.format.open_memmap(
            staging / "passage_hidden.npy", mode="w+", dtype=np.float32, shape=shape)
        for start in tqdm(range(0, len(first), batch_size), desc="passage cache", unit="batch",
                          disable=not progress):
            hidden[start:start + batch_size] = session.run(None, {
                "passage_input_ids": distinct_ids[start:start + batch_size],
                "passage_attention_mask": distinct_mask[start:start + batch_size]})[0]
        hidden.flush()
        del hidden
        np.save(staging / "passage_input_ids.npy", distinct_ids)
        np.save(staging / "passage_attention_mask.npy", distinct_mask)
        info = {"format_version": FORMAT_VERSION, **identity, "windows": int(len(first)),
                "dtype": "float32", "build_seconds": round(time.perf_counter() - started, 2)}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return load_passage_cache(out_dir, graph_set)


def _load_array(path: Path) -> np.ndarray:
    """A memory-mapped .npy; a truncated or corrupt file is a PassageCacheError, not a numpy traceback."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise PassageCacheError(f"passage cache file {path} is damaged ({error})",
                                "remove the cache directory and rebuild it") from None


def load_passage_cache(directory, graph_set) -> PassageCache:
    """Open a cache written by build_passage_cache; refuse one of another format or another lower_passage graph."""
    directory = Path(directory)
    info_path = directory / INFO_FILE
    if not info_path.is_file() or not all((directory / f"{name}.npy").is_file() for name in ARRAYS):
        raise PassageCacheError(f"{directory} is not a passage cache (it needs {INFO_FILE} and "
                                f"{', '.join(name + '.npy' for name in ARRAYS)})",
                                "give a new directory to build a cache in, or one written by deformer-eval")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PassageCacheError(f"{info_path} is not valid JSON: {error}", "remove the directory and rebuild") from None
    if not isinstance(info, dict) or not isinstance(info.get("windows"), int) or isinstance(info["windows"], bool):
        raise PassageCacheError(f"{info_path} is not a passage cache record (no 'windows' count)",
                                "remove the directory and rebuild the cache")
    if info.get("format_version") != FORMAT_VERSION:
        raise PassageCacheError(f"{info_path} has format_version {info.get('format_version')!r}; this version "
                                f"reads {FORMAT_VERSION}", "remove the directory and rebuild the cache")
    identity = graph_identity(graph_set)
    if info.get("lower_passage_sha256") != identity["lower_passage_sha256"]:
        raise PassageCacheError(
            f"passage cache {directory} was built with another lower_passage graph (model "
            f"{str(info.get('model_fingerprint_sha256'))[:12]}, k={info.get('layer')}) than {graph_set.directory} "
            f"(model {identity['model_fingerprint_sha256'][:12]}, k={identity['layer']})",
            "give a new --passage-cache directory, or the graph set the cache was built with")
    arrays = {name: _load_array(directory / f"{name}.npy") for name in ARRAYS}
    windows = (info["windows"], identity["passage_len"])
    expected = {"passage_input_ids": (windows, np.int64), "passage_attention_mask": (windows, np.int64),
                "passage_hidden": ((*windows, identity["hidden_size"]), np.float32)}
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise PassageCacheError(f"passage cache file {directory / (name + '.npy')} is damaged: "
                                    f"{arrays[name].dtype} {arrays[name].shape}, expected {np.dtype(dtype)} {shape}",
                                    "remove the directory and rebuild the cache")
    return PassageCache(directory, info, np.asarray(arrays["passage_input_ids"]),
                        np.asarray(arrays["passage_attention_mask"]), arrays["passage_hidden"])
