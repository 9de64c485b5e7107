"""Answer questions about your own passages through an exported graph set and a passage cache.

The serving path DeFormer is for, outside SQuAD: offline, every passage is cut into windows and
`lower_passage` runs once per distinct window (the passage cache); online, a question runs through
`lower_question`, its passage's windows are read from the cache, `upper` scores spans, and the best span
across the passage's windows is the answer. The windows, the cache and the span search are those of
`deformer-eval --onnx`, so a SQuAD paragraph answered here gets the same answer as there.

Inputs (either one plain or gzip-compressed, told by its first bytes):
  passages   JSON Lines {"id": "p1", "text": "..."}, one per line, ids unique; or a SQuAD v1.1 document, whose
             distinct paragraphs are the passages p00000, p00001, ... (deformer-cache build reads the same files)
  questions  JSON Lines {"id": "q1", "question": "...", "passage_id": "p1"}, one per line, ids unique
"""

import gzip
import hashlib
import io
import os
import re
import stat
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contracts.errors import DeformerBenchError, ModelDirError
from .contracts.readers import GZIP_MAGIC, json_lines, refuse_binary
from .passage_cache import CacheCommands, load_passage_cache
from .passage_cache.key_index import KeySet
from .passage_cache.store import check_windows_cut, tokenizer_sha256
from .serving import onnx_logits, open_passage_cache
from .squad.data import Example, is_unicode, parse_squad
from .squad.features import check_doc_stride, featurize
from .squad.postprocess import predictions_from_logits
from .tokenizer import load_tokenizer


class InputFileError(DeformerBenchError):
    """A passages or questions file is missing or malformed."""


# What a passages file is, for deformer-answer and deformer-cache alike (their --passages help, and every hint).
PASSAGES_FILE = ('JSON Lines, one {"id": ..., "text": ...} per passage, or a SQuAD v1.1 document (its distinct '
                 "paragraphs, ids p00000, p00001, ...); either one plain or gzip-compressed, whatever its name")
QUESTIONS_FILE = 'JSON Lines, one {"id": ..., "question": ..., "passage_id": ...} per question, plain or gzip-compressed'
# A SQuAD document is one JSON object whose first key is "data" (or "version"); a JSON Lines record of passages or
# questions starts with its own keys. This is read from the file's first bytes, whatever its name or line breaks.
SQUAD_START = re.compile(r'\s*\{\s*"(data|version)"\s*:')
HEAD_BYTES = 4096


DAMAGED_GZIP = (EOFError, zlib.error, gzip.BadGzipFile)


def damaged_gzip(source: str, error: Exception) -> InputFileError:
    return InputFileError(f"{source} is gzip-compressed, but damaged or cut off ({error})",
                          "copy or compress it again")


class InputFile:
    """A passages or questions file as the one rule reads it: gzip-compressed or not by its first bytes (not its
    name); a SQuAD document or JSON Lines by its first key (`kind`: "squad" or "jsonl"); a pipe (or /dev/stdin),
    which reads once, held whole. A common wrong file (zip, xz, a NumPy array, UTF-16, ...) is refused naming
    what it is and what to give."""

    def __init__(self, path, what: str, formats: str):
        self.path, self.what, self.formats = Path(path), what, formats
        self.source = f"{what} file {self.path}"
        try:
            if self.path.is_dir():
                raise InputFileError(f"{self.source} is a directory", f"give a file: {formats}")
            mode = self.path.stat().st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):  # /dev/zero would be read forever; a terminal is fine
                with open(self.path, "rb") as device:
                    if not device.isatty():
                        raise InputFileError(f"{self.source} is a device, not a file", f"give {formats}")
            self.held = None if os.path.isfile(self.path) else self.path.read_bytes()
            with self.open(raw=True) as stream:
                raw_head = stream.read(HEAD_BYTES)
            self.gzip = raw_head.startswith(GZIP_MAGIC)
            with self.open() as stream:
                head = stream.read(HEAD_BYTES)
        except DAMAGED_GZIP as error:
            raise damaged_gzip(self.source, error) from None
        except OSError as error:
            what = "it does not exist" if not self.path.exists() else error.strerror or error
            raise InputFileError(f"cannot read the {self.source}: {what}", f"give {formats}") from None
        refuse_binary(head, self.source + (" (gzip-compressed)" if self.gzip else ""), InputFileError)
        self.kind = "squad" if SQUAD_START.match(head.decode("utf-8-sig", "replace")) else "jsonl"

    def open(self, raw: bool = False):
        """A binary stream of the file's bytes (decompressed, unless `raw`), from the start."""
        stream = io.BytesIO(self.held) if self.held is not None else open(self.path, "rb")
        return gzip.GzipFile(fileobj=stream) if not raw and self.gzip else stream

    def squad_passages(self) -> list:
        """(id, text) of a SQuAD document's distinct paragraphs, in file order: p00000, p00001, ..."""
        with self.open(raw=True) as stream:
            contexts = dict.fromkeys(example.context for example in parse_squad(stream.read(), self.path))
        return [(f"p{index:05d}", context) for index, context in enumerate(contexts)]


def iter_jsonl(source: InputFile, fields: tuple, unique_ids: bool = True):
    """(line number, object) of a JSON Lines file, each object with string `fields` (blank lines skipped), ids
    unique (`unique_ids`: checked, ~16 bytes held an id: see unique_id_records); errors name the line. A file of no
    records is refused at its end. One line in memory at a time, or with `unique_ids` one batch of lines."""
    what, path = source.what, source.path
    hint = f"write {source.formats}"
    records = 0
    try:
        with source.open() as stream:
            lines = checked_records(source, stream, fields)
            for number, record in unique_id_records(source, lines) if unique_ids else lines:
                records += 1
                yield number, record
    except DAMAGED_GZIP as error:  # a gzip stream that ends early or is damaged past its first bytes
        raise damaged_gzip(source.source, error) from None
    except OSError as error:
        raise InputFileError(f"cannot read the {what} file {path}: {error.strerror or error}", hint) from None
    if not records:
        raise InputFileError(f"{what} file {path} holds no {what}", hint)


def checked_records(source: InputFile, stream, fields: tuple):
    """(line number, object) of each non-blank line of `stream`, refused unless an object with string `fields`."""
    what, path = source.what, source.path
    hint = f"write {source.formats}"
    for number, record in json_lines(stream, source.source, InputFileError, hint):
        if not isinstance(record, dict) or not all(isinstance(record.get(field), str) for field in fields):
            raise InputFileError(f"{what} file {path}, line {number}: expected an object with string "
                                 f"{', '.join(repr(field) for field in fields)}", hint)
        if not all(is_unicode(record[field]) for field in fields):
            raise InputFileError(f"{what} file {path}, line {number}: a string holds an unpaired surrogate "
                                 "escape (such as \\ud800), which is not text", "write the text as UTF-8")
        yield number, record


# unique_id_records checks ids a batch at a time (numpy's work is per batch, not per id); a batch holds its
# records until checked, so it ends at this many lines or at this many characters of ids and texts, whichever first.
ID_BATCH_LINES = 8192
ID_BATCH_CHARACTERS = 16_000_000


def id_digest(record_id: str) -> bytes:
    """16 bytes standing for an id (ids were checked to be text, so they encode as UTF-8)."""
    return hashlib.blake2b(record_id.encode("utf-8"), digest_size=16).digest()


def unique_id_records(source: InputFile, records):
    """`records` ((line number, object) with a string "id"), in order, refused at the first id that repeats an
    earlier line's, with that line. Held: each id's 16-byte digest in sorted arrays (key_index.KeySet), ~16 bytes an
    id, ~30 while its levels merge (a dict of the ids took ~130: 2.7 GB at 21M passages). Exact: a digest seen before
    is only a candidate, and a repeat is refused once its id is found equal to an earlier line's (in the batch, or
    read again from the file before it: a pipe is held whole), so a digest collision cannot refuse distinct ids.
    Errors come in file order: a batch's records before its first repeat are given (their consumer's errors come
    first), and a bad line after a batch's records (refused by `records`) waits until those records are checked."""
    seen = KeySet()
    for batch in record_batches(records):
        repeat = first_repeat(source, seen, batch)
        if repeat is None:
            yield from batch
            continue
        position, first = repeat
        yield from batch[:position]
        number, record = batch[position]
        raise InputFileError(f"{source.what} file {source.path}, line {number}: id {record['id']!r} repeats line "
                             f"{first}", f"give every one of the {source.what} its own id")


def record_batches(records):
    """Lists of consecutive (line number, object) (ID_BATCH_LINES, ID_BATCH_CHARACTERS). An error raised by
    `records` is raised after the batch of the records before it is given."""
    batch, characters = [], 0
    try:
        for number, record in records:
            batch.append((number, record))
            characters += sum(len(value) for value in record.values() if isinstance(value, str))
            if len(batch) >= ID_BATCH_LINES or characters >= ID_BATCH_CHARACTERS:
                yield batch
                batch, characters = [], 0
    except Exception:  # a bad line, or a damaged stream: the lines before it stand first in the file
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def first_repeat(source: InputFile, seen: KeySet, batch: list):
    """(position in `batch`, line number of the id's first line) of the batch's first record whose id an earlier
    line holds, or None; the batch's digests join `seen`."""
    digests = [id_digest(record["id"]) for _, record in batch]
    held_before = seen.add(digests)
    if not held_before.any() and len(set(digests)) == len(digests):
        return None  # every digest new: no id repeats (the common case)
    candidates = {batch[position][1]["id"] for position in np.flatnonzero(held_before)}
    first_lines = first_lines_before(source, candidates, batch[0][0]) if candidates else {}
    for position, (number, record) in enumerate(batch):
        first = first_lines.setdefault(record["id"], number)
        if first != number:
            return position, first
    return None  # digests shared by distinct ids: a collision, not a repeat


def first_lines_before(source: InputFile, ids: set, before: int) -> dict:
    """{id: its first line number} of those of `ids` that the file's lines before line `before` hold, read again
    (lines already checked: only a repeat, or a digest collision, costs this pass)."""
    found = {}
    with source.open() as stream:
        for number, record in json_lines(stream, source.source, InputFileError):
            if number >= before:
                break
            if record["id"] in ids:
                found.setdefault(record["id"], number)
    return found


def has_tokens(text: str, tokenizer) -> bool:
    """False for text the tokenizer reads as nothing: whitespace, zero-width or control characters only."""
    if any(character.isalnum() for character in text):
        return True  # the common case, without tokenizing twice
    return bool(tokenizer(text, add_special_tokens=False)["input_ids"])


def passages_file(path) -> InputFile:
    """A passages file (PASSAGES_FILE), its format told from its first bytes."""
    return InputFile(path, "passages", PASSAGES_FILE)


def iter_passages(path, tokenizer=None, unique_ids: bool = True, source: InputFile = None):
    """(passage id, text) of a passages file (PASSAGES_FILE), JSON Lines one line in memory at a time; empty texts
    are refused (they have no span to answer with), and with a tokenizer so are texts it reads as no tokens at all
    (e.g. only zero-width characters). `unique_ids=False`: ids not checked (a file read again after a first,
    checking pass); `source`: the file already opened (a pipe is read once)."""
    source = source or passages_file(path)
    if source.kind == "squad":
        passages = ((index + 1, *passage) for index, passage in enumerate(source.squad_passages()))
        where = "paragraph"
    else:
        passages = ((number, record["id"], record["text"])
                    for number, record in iter_jsonl(source, ("id", "text"), unique_ids))
        where = "line"
    for number, passage_id, text in passages:
        if not text.strip() or (tokenizer is not None and not has_tokens(text, tokenizer)):
            raise InputFileError(f"passages file {source.path}, {where} {number}: passage {passage_id!r} has no text "
                                 "(nothing but whitespace, zero-width or control characters)",
                                 "remove it or give it text")
        yield passage_id, text


def read_passages(path, tokenizer=None) -> dict:
    """{passage id: text}, checked as iter_passages checks them."""
    return dict(iter_passages(path, tokenizer))


def read_questions(path, passages: dict, tokenizer=None) -> list:
    """Questions as Examples (no gold answers) over their passage's text; unknown passage ids are refused, and
    empty questions (with a tokenizer: questions it reads as no tokens, such as zero-width characters)."""
    source = InputFile(path, "questions", QUESTIONS_FILE)
    if source.kind == "squad":
        raise InputFileError(f"questions file {path} is a SQuAD document: questions for deformer-answer are "
                             "JSON Lines, each naming its passage", f"write {QUESTIONS_FILE}; to score a SQuAD "
                             "file's questions, use deformer-eval --dataset FILE --model MODEL --onnx GRAPHS")
    examples = []
    for number, record in iter_jsonl(source, ("id", "question", "passage_id")):
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
    directory = Path(tokenizer_dir) if tokenizer_dir is not None else Path(graph_set.model.source)
    if tokenizer_dir is None and not directory.is_dir():
        raise ModelDirError(f"the graphs were exported from {directory}, which is not here to take the "
                            "tokenizer from", "give --tokenizer MODEL_DIR (the model directory the graphs came from)")
    tokenizer = load_tokenizer(directory)
    vocab_size = graph_set.model.vocab_size
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
    deformer = graph_set.deformer
    windows = featurize(passage_examples(passages), tokenizer, deformer.question_len, deformer.passage_len,
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
    check_doc_stride(graph_set.deformer.passage_len, doc_stride)
    cache = load_passage_cache(passage_cache_dir, graph_set) if Path(passage_cache_dir).exists() else None
    if cache is not None:  # windows cut otherwise would only look missing (or, with "compute", all be misses)
        check_windows_cut(cache.info, passage_cache_dir, doc_stride, tokenizer_sha256(tokenizer))
    if cache is not None and cache.info["complete"]:
        record = {"directory": str(passage_cache_dir), "cache_windows": cache.info["windows"], "built": False}
    else:  # absent, or a build that did not finish: it goes on if it was started for these passages
        cache, record = cache_passages(graph_set, passages, tokenizer, passage_cache_dir, doc_stride, batch_size,
                                       progress, commands)
    started = time.perf_counter()
    deformer = graph_set.deformer
    features = featurize(questions, tokenizer, deformer.question_len, deformer.passage_len, doc_stride,
                         progress=progress)
    if cache_miss == "refuse":
        rows = cache.rows(features.passage_input_ids, features.passage_attention_mask,  # refuses missing windows
                          fix=commands.add_missing)
    else:
        rows = cache.lookup(features.passage_input_ids, features.passage_attention_mask)  # -1: computed online
    start, end = onnx_logits(graph_set, features, cache, rows, batch_size, progress)
    answers = predictions_from_logits(questions, features, start, end, deformer.question_len)
    missed = rows < 0
    record.update(cache_misses={"question_windows": int(missed.sum()),
                                "questions": len({features.example_index[i] for i in np.flatnonzero(missed)})})
    record.update(questions=len(questions), question_windows=len(features),
                  online_seconds=round(time.perf_counter() - started, 2))
    return Answers(answers, record)
