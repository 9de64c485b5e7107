"""Answer questions about your own passages through an exported graph set and a passage cache.

The serving path DeFormer is for, outside SQuAD: offline, every passage is cut into windows and
`lower_passage` runs once per distinct window (the passage cache); online, a question runs through
`lower_question`, its passage's windows are read from the cache, `upper` scores spans, and the best span
across the passage's windows is the answer. The windows, the cache and the span search are those of
`deformer-eval --onnx`, so a SQuAD paragraph answered here gets the same answer as there.

Inputs are JSON Lines:
  passages   {"id": "p1", "text": "..."}                            one per line, ids unique
  questions  {"id": "q1", "question": "...", "passage_id": "p1"}    one per line, ids unique
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeformerBenchError, ModelDirError
from .serving import load_tokenizer, onnx_logits, open_passage_cache
from .passage_cache import CacheCommands, load_passage_cache
from .passage_cache.store import check_windows_cut, tokenizer_sha256
from .squad.data import Example, is_unicode
from .squad.features import check_doc_stride, featurize
from .squad.postprocess import predictions_from_logits


class InputFileError(DeformerBenchError):
    """A passages or questions file is missing or malformed."""


def text_lines(path, what: str):
    """(line number, text) of a UTF-8 file, one line in memory at a time. Lines end at \n, \r\n or a lone \r (as
    Python's text files read them), not at the U+2028 and U+0085 that JSON strings may hold unescaped (where
    str.splitlines would cut); a byte-order mark is read past. Read as bytes, so a decoding error names its line."""
    number = 0
    with open(path, "rb") as handle:
        for raw in handle:  # bytes up to and including each \n
            try:
                text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
            except UnicodeDecodeError as error:
                raise InputFileError(f"{what} file {path}, line {number + 1}: not UTF-8 ({error.reason}: byte "
                                     f"{error.object[error.start:error.start + 1]!r} at byte {error.start} of the "
                                     "line)", "write the file as UTF-8") from None
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text  # \r\n is one line end
            for line in text.split("\r"):  # JSON strings cannot hold a raw \r: each one ends a line
                number += 1
                yield number, line


def iter_jsonl(path, fields: tuple, what: str, unique_ids: bool = True):
    """(line number, object) of a JSON Lines file, one line in memory at a time, each object with string `fields`
    (blank lines skipped), ids unique (`unique_ids`: checked; the check holds every id, ~130 bytes each); errors
    name the line. A file of no records is refused at its end."""
    path = Path(path)
    hint = f"write one JSON object per line with {', '.join(repr(field) for field in fields)} (strings)"
    ids, records = {}, 0
    try:
        for number, line in text_lines(path, what):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputFileError(f"{what} file {path}, line {number}: not JSON ({error})", hint) from None
            if not isinstance(record, dict) or not all(isinstance(record.get(field), str) for field in fields):
                raise InputFileError(f"{what} file {path}, line {number}: expected an object with string "
                                     f"{', '.join(repr(field) for field in fields)}", hint)
            if not all(is_unicode(record[field]) for field in fields):
                raise InputFileError(f"{what} file {path}, line {number}: a string holds an unpaired surrogate "
                                     "escape (such as \\ud800), which is not text", "write the text as UTF-8")
            if unique_ids:
                if record["id"] in ids:
                    raise InputFileError(f"{what} file {path}, line {number}: id {record['id']!r} repeats line "
                                         f"{ids[record['id']]}", f"give every one of the {what} its own id")
                ids[record["id"]] = number
            records += 1
            yield number, record
    except OSError as error:
        raise InputFileError(f"cannot read the {what} file {path}: {error}", hint) from None
    if not records:
        raise InputFileError(f"{what} file {path} holds no {what}", hint)


def read_jsonl(path, fields: tuple, what: str) -> list:
    """[(line number, object)] of a JSON Lines file, checked as iter_jsonl checks it."""
    return list(iter_jsonl(path, fields, what))


def has_tokens(text: str, tokenizer) -> bool:
    """False for text the tokenizer reads as nothing: whitespace, zero-width or control characters only."""
    if any(character.isalnum() for character in text):
        return True  # the common case, without tokenizing twice
    return bool(tokenizer(text, add_special_tokens=False)["input_ids"])


def iter_passages(path, tokenizer=None, unique_ids: bool = True):
    """(passage id, text) of a passages file, one line in memory at a time; empty texts are refused (they have no
    span to answer with), and with a tokenizer so are texts it reads as no tokens at all (e.g. only zero-width
    characters). `unique_ids=False`: ids not checked (a file read again after a first, checking pass)."""
    for number, record in iter_jsonl(path, ("id", "text"), "passages", unique_ids):
        empty = not record["text"].strip() or (tokenizer is not None and not has_tokens(record["text"], tokenizer))
        if empty:
            raise InputFileError(f"passages file {path}, line {number}: passage {record['id']!r} has no text "
                                 "(nothing but whitespace, zero-width or control characters)",
                                 "remove it or give it text")
        yield record["id"], record["text"]


def read_passages(path, tokenizer=None) -> dict:
    """{passage id: text}, checked as iter_passages checks them."""
    return dict(iter_passages(path, tokenizer))


def read_questions(path, passages: dict, tokenizer=None) -> list:
    """Questions as Examples (no gold answers) over their passage's text; unknown passage ids are refused, and
    empty questions (with a tokenizer: questions it reads as no tokens, such as zero-width characters)."""
    examples = []
    for number, record in read_jsonl(path, ("id", "question", "passage_id"), "questions"):
        question = record["question"]
        if not question.strip() or (tokenizer is not None and not has_tokens(question, tokenizer)):
            raise InputFileError(f"questions file {path}, line {number}: question {record['id']!r} is empty",
                                 "remove it or give it text")
        if record["passage_id"] not in passages:
            raise InputFileError(f"questions file {path}, line {number}: question {record['id']!r} asks about "
                                 f"passage {record['passage_id']!r}, which the passages file does not have",
                                 "add the passage, or correct its passage_id")
        examples.append(Example(record["id"], record["passage_id"], passages[record["passage_id"]],
                                record["question"], ()))
    return examples


def passage_examples(passages: dict) -> list:
    """One question-less Example per passage: featurize cuts its windows exactly as it does for questions."""
    return [Example(passage_id, passage_id, text, "", ()) for passage_id, text in passages.items()]


def graph_set_tokenizer(graph_set, tokenizer_dir=None):
    """The tokenizer of `tokenizer_dir`, else of the model directory the graphs were exported from; refused
    when its vocabulary does not fit the graphs' embedding table."""
    manifest = graph_set.manifest
    directory = Path(tokenizer_dir) if tokenizer_dir is not None else Path(manifest["model"]["source"])
    if tokenizer_dir is None and not directory.is_dir():
        raise ModelDirError(f"the graphs were exported from {directory}, which is not here to take the "
                            "tokenizer from", "give --tokenizer MODEL_DIR (the model directory the graphs came from)")
    tokenizer = load_tokenizer(directory)
    vocab_size = manifest["model"]["vocab_size"]
    if len(tokenizer) > vocab_size:
        raise ModelDirError(f"the tokenizer of {directory} has {len(tokenizer):,} tokens, more than the "
                            f"{vocab_size:,} the graphs embed", "give --tokenizer the model directory the graphs came from")
    return tokenizer


@dataclass
class Answers:
    answers: dict  # {question id: answer text}; "" when no window had a valid span
    passage_cache: dict  # passages, windows, distinct windows, built or reused, seconds


def cache_passages(graph_set, passages: dict, tokenizer, directory, doc_stride: int, batch_size: int = 64,
                   progress: bool = True, commands: CacheCommands = CacheCommands()):
    """(cache, record): the offline step. Builds the passage cache of every passage's windows in `directory`
    if it does not exist (or goes on with its unfinished build of these same passages); if it does, checks that it
    holds them all (one of other passages or another stride is refused). `commands`: see
    serving.open_passage_cache and PassageCache.rows."""
    deformer = graph_set.manifest["deformer"]
    windows = featurize(passage_examples(passages), tokenizer, deformer["question_len"], deformer["passage_len"],
                        doc_stride, progress=progress)  # refuses a bad stride before any graph runs
    cache, built = open_passage_cache(graph_set, windows, Path(directory), batch_size, progress, doc_stride,
                                      commands)
    rows = cache.rows(windows.passage_input_ids, windows.passage_attention_mask,  # refuses missing windows
                      fix=commands.add_missing)
    record = {"directory": str(directory), "passages": len(passages), "passage_windows": len(windows),
              "distinct_windows": int(len(np.unique(rows))), "cache_windows": cache.info["windows"],
              "built": built, "build_seconds": cache.info["build_seconds"] if built else None}
    return cache, record


CACHE_MISS_RULES = ("refuse", "compute")


def answer_questions(graph_set, passages: dict, questions: list, tokenizer, passage_cache_dir, doc_stride: int = 128,
                     batch_size: int = 64, progress: bool = True, cache_miss: str = "refuse",
                     commands: CacheCommands = CacheCommands()) -> Answers:
    """Answer `questions` (Examples from read_questions). A cache already in `passage_cache_dir` is read as is;
    an absent one is built first from every passage. A question window whose passage window the cache lacks
    (a passage added after the build, another doc stride) is a cache miss; `cache_miss` says what then:
    "refuse" (PassageCacheError before any question runs: most often the wrong cache directory) or "compute"
    (lower_passage runs online for those windows, as a cache miss costs in serving; the cache is not written,
    and the record counts them). `commands`: see serving.open_passage_cache and PassageCache.rows."""
    if cache_miss not in CACHE_MISS_RULES:
        raise ValueError(f"cache_miss must be one of {CACHE_MISS_RULES}, got {cache_miss!r}")
    deformer = graph_set.manifest["deformer"]
    check_doc_stride(deformer["passage_len"], doc_stride)
    cache = load_passage_cache(passage_cache_dir, graph_set) if Path(passage_cache_dir).exists() else None
    if cache is not None:  # windows cut otherwise would only look missing (or, with "compute", all be misses)
        check_windows_cut(cache.info, passage_cache_dir, doc_stride, tokenizer_sha256(tokenizer))
    if cache is not None and cache.info["complete"]:
        record = {"directory": str(passage_cache_dir), "cache_windows": cache.info["windows"], "built": False}
    else:  # absent, or a build that did not finish: it goes on if it was started for these passages
        cache, record = cache_passages(graph_set, passages, tokenizer, passage_cache_dir, doc_stride, batch_size,
                                       progress, commands)
    started = time.perf_counter()
    features = featurize(questions, tokenizer, deformer["question_len"], deformer["passage_len"], doc_stride,
                         progress=progress)
    if cache_miss == "refuse":
        rows = cache.rows(features.passage_input_ids, features.passage_attention_mask,  # refuses missing windows
                          fix=commands.add_missing)
    else:
        rows = cache.lookup(features.passage_input_ids, features.passage_attention_mask)  # -1: computed online
    start, end = onnx_logits(graph_set, features, cache, rows, batch_size, progress)
    answers = predictions_from_logits(questions, features, start, end, deformer["question_len"])
    missed = rows < 0
    record.update(cache_misses={"question_windows": int(missed.sum()),
                                "questions": len({features.example_index[i] for i in np.flatnonzero(missed)})})
    record.update(questions=len(questions), question_windows=len(features),
                  online_seconds=round(time.perf_counter() - started, 2))
    return Answers(answers, record)
