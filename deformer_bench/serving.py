"""The serving side, without torch: the tokenizer of a model directory, ONNX Runtime sessions of a graph set
(runtime.sessions), the online path over a passage cache. deformer-answer and deformer-eval --onnx use it.
"""

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import ManifestError, ModelDirError, first_line
from .files import scratch_directory
from .passage_cache import CacheCommands, build_passage_cache, load_passage_cache
from .passage_cache.store import check_windows_cut


def has_tokenizer(model_dir: Path) -> bool:
    return any((Path(model_dir) / name).exists() for name in ("tokenizer.json", "vocab.txt", "vocab.json"))


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    if not has_tokenizer(model_dir):
        raise ModelDirError(f"{model_dir} has no tokenizer (tokenizer.json or vocab file)",
                            "save the tokenizer into the model directory (tokenizer.save_pretrained)")
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # the tokenizers library raises plain Exception on a corrupt tokenizer.json
        raise ModelDirError(f"cannot load the tokenizer of {model_dir}: {type(error).__name__}: {first_line(error)}",
                            "save the tokenizer again (tokenizer.save_pretrained) or copy it whole") from None


def batch_slices(count: int, batch_size: int, progress: bool, desc: str):
    for start in tqdm(range(0, count, batch_size), desc=desc, unit="batch", disable=not progress):
        yield slice(start, start + batch_size)


# ORT's defaults (threads = cores, sequential, all graph optimizations) except spinning, which is off.
EVALUATION_SESSION = {"intra_op_threads": 0, "inter_op_threads": 0, "graph_optimization": "all",
                      "allow_spinning": False, "provider": "CPUExecutionProvider"}


def evaluation_session(path: Path):
    """An ONNX Runtime CPU session (runtime.sessions.open_session) with spinning off: three sessions run
    back to back per batch, and a spinning pool holds the cores the next session (or a training run beside
    it) needs. At batch 1 the bench measured ORT's default spinning doubling the latency of back-to-back
    sessions (results/settings); at evaluation's batch 64 beside a training run it saved only ~3%
    (4 batches: 22.3-23.0 s vs 23.3-23.7 s)."""
    from .runtime.sessions import open_session

    try:
        return open_session(path, EVALUATION_SESSION)
    except Exception as error:  # onnxruntime's own types (InvalidProtobuf, Fail, ...): a damaged graph
        raise _damaged(path, error) from None


def _damaged(where, error: Exception) -> ManifestError:
    return ManifestError(f"graph {where} cannot be loaded by onnxruntime: {first_line(error)}",
                         "export the graph set again (its files were damaged after export)")


def online_sessions(graph_set):
    """lower_question and upper of a verified GraphSet, as runtime.sessions.GraphSetSessions (CPU, no spinning)."""
    from .runtime.sessions import GraphSetSessions

    try:
        return GraphSetSessions(graph_set.directory, ("lower_question", "upper"), EVALUATION_SESSION)
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


def passage_states(cache, rows, missed, lower_passage, passage_input_ids, passage_attention_mask):
    """[B, Lp, H] float32: cached rows read from the cache, missed ones (`missed` [B] bool) run through the
    `lower_passage` session."""
    if not missed.any():
        return cache.passage_hidden(rows)
    computed = lower_passage.run(["passage_hidden"], {"passage_input_ids": passage_input_ids[missed],
                                                      "passage_attention_mask": passage_attention_mask[missed]})[0]
    if missed.all():
        return computed
    states = np.empty((len(rows),) + computed.shape[1:], dtype=np.float32)
    states[missed] = computed
    states[~missed] = cache.passage_hidden(rows[~missed])
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
