"""The serving side, without torch: ONNX Runtime sessions of a graph set (runtime.sessions), the online path
over a passage cache. deformer-answer and deformer-eval --onnx use it.
"""

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .contracts.errors import ManifestError, first_line
from .files import scratch_directory
from .passage_cache import CacheCommands, build_passage_cache, load_passage_cache
from .passage_cache.store import check_windows_cut
from .runtime.sessions import GraphSetSessions, open_session


def batch_slices(count: int, batch_size: int, progress: bool, desc: str):
    for start in tqdm(range(0, count, batch_size), desc=desc, unit="batch", disable=not progress):
        yield slice(start, start + batch_size)


def evaluation_session(path: Path):
    """An ONNX Runtime CPU session with the one set of session defaults (runtime.sessions.DEFAULT_SETTINGS:
    spinning off); a graph onnxruntime cannot load is named as damaged."""
    try:
        return open_session(path)
    except Exception as error:  # onnxruntime's own types (InvalidProtobuf, Fail, ...): a damaged graph
        raise _damaged(path, error) from None


def _damaged(where, error: Exception) -> ManifestError:
    return ManifestError(f"graph {where} cannot be loaded by onnxruntime: {first_line(error)}",
                         "export the graph set again (its files were damaged after export)")


def online_sessions(graph_set):
    """lower_question and upper of a verified GraphSet, as runtime.sessions.GraphSetSessions (CPU, no spinning)."""
    try:
        return GraphSetSessions(graph_set.directory, ("lower_question", "upper"))
    except Exception as error:  # onnxruntime's own types (InvalidProtobuf, Fail, ...): a damaged graph
        raise _damaged(graph_set.directory, error) from None


def onnx_logits(graph_set, features, cache, rows, batch_size: int = 64, progress: bool = True):
    """The serving path of a verified GraphSet: lower_question online, the passage states read from the
    PassageCache (built offline by lower_passage; `rows` [N]: each window's row in it), then upper.
    A row of -1 is a cache miss: that window's states are computed online by lower_passage (the cache is
    not written: only `deformer-cache build` writes it)."""
    sessions = online_sessions(graph_set)
    lower_passage = None
    starts, ends = [], []
    for part in batch_slices(len(features), batch_size, progress, "onnx"):
        part_rows = rows[part]
        missed = part_rows < 0
        if missed.any() and lower_passage is None:
            lower_passage = evaluation_session(graph_set.path("lower_passage"))
        passage_hidden = passage_states(cache, part_rows, missed, lower_passage,
                                        features.passage_input_ids[part], features.passage_attention_mask[part])
        start, end = sessions.online(features.question_input_ids[part], features.question_attention_mask[part],
                                     passage_hidden, features.passage_attention_mask[part])
        starts.append(start)
        ends.append(end)
    return np.concatenate(starts), np.concatenate(ends)


def passage_states(cache, rows, missed, lower_passage, passage_input_ids, passage_attention_mask, positions=None):
    """[B, positions (default Lp), H] float32: cached rows read from the cache (their first `positions` only),
    missed ones (`missed` [B] bool) run through the `lower_passage` session on their whole windows, as the cache
    was built, then cut."""
    if not missed.any():
        return cache.passage_hidden(rows, positions)
    computed = lower_passage.run(["passage_hidden"], {"passage_input_ids": passage_input_ids[missed],
                                                      "passage_attention_mask": passage_attention_mask[missed]})[0]
    computed = np.ascontiguousarray(computed[:, :positions])
    if missed.all():
        return computed
    states = np.empty((len(rows),) + computed.shape[1:], dtype=np.float32)
    states[missed] = computed
    states[~missed] = cache.passage_hidden(rows[~missed], positions)
    return states


def open_passage_cache(graph_set, features, directory: Path, batch_size: int, progress: bool, doc_stride=None,
                       commands: CacheCommands = CacheCommands()):
    """(cache, built): the cache in `directory` if it exists and its build finished (it must hold every window),
    else one built there from the features' distinct passage windows, in the cache's dtype (float32 for a new
    one). An unfinished build goes on only if it was started for the same windows (else it is refused, naming
    the command that started it); a cache this call starts is removed again if the build fails or is
    interrupted (the cache is the means here, not the product), and `commands.start` is recorded as the command
    that started it."""
    if directory.exists():
        cache = load_passage_cache(directory, graph_set)
        check_windows_cut(cache.info, directory, doc_stride)  # else its windows would only look missing
        if cache.info["complete"]:
            return cache, False
    return build_passage_cache(graph_set, features.passage_input_ids, features.passage_attention_mask, directory,
                               evaluation_session, batch_size, progress, doc_stride=doc_stride,
                               command=commands.start, keep_unfinished=False), True


def onnx_evaluation_logits(graph_set, features, passage_cache_dir, batch_size: int, progress: bool, doc_stride=None,
                           commands: CacheCommands = CacheCommands()):
    """Logits through the graph set, and what the passage cache did: offline build (or reuse of
    `passage_cache_dir`), then the online path timed alone. `commands`: see open_passage_cache and
    PassageCache.rows."""
    with scratch_directory("deformer-passage-cache-") as scratch:
        directory = Path(passage_cache_dir) if passage_cache_dir is not None else Path(scratch) / "cache"
        cache, built = open_passage_cache(graph_set, features, directory, batch_size, progress, doc_stride, commands)
        started = time.perf_counter()
        rows = cache.rows(features.passage_input_ids, features.passage_attention_mask, fix=commands.add_missing)
        start, end = onnx_logits(graph_set, features, cache, rows, batch_size, progress)
        record = {"windows": len(features), "distinct_windows": len(np.unique(rows)),
                  "cache_windows": cache.info["windows"], "built": built,
                  "build_seconds": cache.info["build_seconds"] if built else None,
                  "online_seconds": round(time.perf_counter() - started, 2),
                  "directory": str(passage_cache_dir) if passage_cache_dir is not None else None}
        del cache  # closes the memory map before the scratch directory goes
    return start, end, record
