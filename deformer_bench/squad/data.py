"""Read SQuAD v1.1 JSON (plain or gzip-compressed, any name) into flat, validated examples."""

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeformerBenchError
from ..readers import GZIP_MAGIC, parse_json, read_bytes


class DatasetError(DeformerBenchError):
    """A dataset file is missing or malformed."""


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context


@dataclass(frozen=True)
class Example:
    id: str
    title: str
    context: str
    question: str
    answers: tuple


def gunzip(raw: bytes, source: str, error) -> bytes:
    """`raw` decompressed when it is gzip (its first bytes say so, whatever the file's name), else as it is."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as failure:
        raise error(f"{source} is a damaged gzip file: {failure}", "copy or download it again") from None


def parse_squad(raw: bytes, path) -> list:
    """The questions of a SQuAD v1.1 document's bytes (plain or gzip-compressed), read as load_squad reads a file."""
    source = f"dataset {path}"
    document = parse_json(gunzip(raw, source, DatasetError), source, DatasetError, "give a SQuAD v1.1 file")
    return squad_examples(document, Path(path))


def is_unicode(text: str) -> bool:
    """False for a str holding an unpaired surrogate (JSON's "\\ud800"): not text any tokenizer can read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require(condition: bool, path: Path, where: str, what: str) -> None:
    if not condition:
        raise DatasetError(f"dataset {path}: {where}: {what}", "fix the file, or give the official SQuAD v1.1 JSON")


def load_squad(path) -> list:
    """All questions in file order, from a SQuAD v1.1 .json file, plain or gzip-compressed (told by its first bytes,
    not its name). Malformed entries raise DatasetError naming the article/question."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a pipe, a device: readable, but not a dataset
        raise DatasetError(f"dataset {path} is not a regular file", "give the path of a SQuAD v1.1 .json or .json.gz "
                           "file")
    return parse_squad(read_bytes(path, "dataset", DatasetError), path)


def squad_examples(document, path: Path) -> list:
    """The questions of a parsed SQuAD document, each checked; errors name `path`."""
    _require(isinstance(document, dict) and isinstance(document.get("data"), list), path, "top level",
             "expected an object with a 'data' list")
    examples, seen = [], {}  # seen: question id -> where it was first
    for article_index, article in enumerate(document["data"]):
        title = article.get("title", f"#{article_index}") if isinstance(article, dict) else f"#{article_index}"
        where = f"article {article_index} ({title!r})"
        _require(isinstance(article, dict) and isinstance(article.get("paragraphs"), list), path, where,
                 "expected a 'paragraphs' list")
        for paragraph_index, paragraph in enumerate(article["paragraphs"]):
            here = f"{where}, paragraph {paragraph_index}"
            _require(isinstance(paragraph, dict) and isinstance(paragraph.get("context"), str)
                     and isinstance(paragraph.get("qas"), list), path, here, "expected 'context' text and a 'qas' list")
            for qa in paragraph["qas"]:
                qid = qa.get("id") if isinstance(qa, dict) else None
                _require(isinstance(qid, str) and isinstance(qa.get("question"), str)
                         and isinstance(qa.get("answers"), list), path, f"{here}, question {qid!r}",
                         "expected 'id', 'question' and an 'answers' list")
                answers = []
                for answer in qa["answers"]:
                    _require(isinstance(answer, dict) and isinstance(answer.get("text"), str)
                             and isinstance(answer.get("answer_start"), int), path, f"{here}, question {qid!r}",
                             "each answer needs 'text' and an integer 'answer_start'")
                    answers.append(Answer(answer["text"], answer["answer_start"]))
                _require(is_unicode(qa["question"]) and is_unicode(paragraph["context"]), path,
                         f"{here}, question {qid!r}", "an unpaired surrogate escape (such as \\ud800) is not text")
                _require(bool(answers), path, f"{here}, question {qid!r}",
                         "no answers (SQuAD v2's unanswerable questions are not supported)")
                _require(qid not in seen, path, f"{here}, question {qid!r}",
                         f"the id repeats {seen.get(qid)} (each question needs its own id)")
                seen[qid] = here
                examples.append(Example(qid, title, paragraph["context"], qa["question"], tuple(answers)))
    _require(bool(examples), path, "top level", "holds no questions")
    return examples
