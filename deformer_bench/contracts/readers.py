"""The one reader of JSON, JSON Lines and text: every JSON file the project reads goes through it (YAML:
deformer_bench.yaml_reader, which refuses bad text the same way).

Python's json module accepts what the format does not say, and keeps quiet about it:
- a key given twice in one object keeps the last value: refused here at any depth, naming the key and the file;
- NaN, Infinity and -Infinity are not JSON (no other reader takes them): refused, naming the line
  (strict_json holds the rule; the runner reads its job by it too);
- text that is not UTF-8 is refused naming the byte, its offset and line, and what the file looks like when it
  is a common wrong one (gzip, zip, a NumPy array, UTF-16, ...: `describe_binary`). A byte-order mark is read
  past.
Errors are `error` (a DeformerBenchError subclass: the caller's own, e.g. ManifestError for a manifest), with
`what` naming the kind of file ("graph set manifest") and a hint of what to give instead.
"""

import codecs
import json

from . import strict_json
from .errors import DeformerBenchError


class FormatError(DeformerBenchError):
    """A JSON or YAML file (or text) is not valid, or says something twice."""


# Magic bytes of files that are given where text is read, and what to do instead.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip), or give the file it was made from"),
    (b"PK\x03\x04", "a zip archive", "extract the file you mean from it and give that"),
    (b"BZh", "bzip2-compressed", "decompress it (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it (unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it (unzstd)"),
    (b"\x93NUMPY", "a NumPy array (.npy)", "give the text file meant here"),
    (b"%PDF-", "a PDF document", "give the text file meant here"),
    (b"SQLite format 3\x00", "an SQLite database", "give the text file meant here"),
    (b"PAR1", "a Parquet file", "convert it to the text format meant here"),
    (b"\x00\x00\xfe\xff", "UTF-32 text", "save it as UTF-8"),
    (b"\xff\xfe\x00\x00", "UTF-32 text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
)
GZIP_MAGIC = _MAGIC[0][0]


def describe_binary(head: bytes):
    """(what the file is, what to do) when its first bytes are those of a common file that is not UTF-8 text
    (compressed, an archive, an array, UTF-16/32 text, a Python pickle, a tar archive, anything with a NUL
    byte); None for what may be text."""
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            return what, fix
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive", "extract the file you mean from it and give that"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle", "give the text file meant here"
    if b"\x00" in head:
        return f"binary data (a NUL byte at offset {head.index(0)})", "give the text file meant here"
    return None


def refuse_binary(head, source: str, error=FormatError) -> None:
    """`error` naming what the file is, when its first bytes (or characters) are a common binary file's."""
    kind = describe_binary(head.encode("utf-8", "surrogatepass") if isinstance(head, str) else head)
    if kind is not None:
        raise error(f"{source} is {kind[0]}, not UTF-8 text", kind[1])


def decode_text(raw: bytes, source: str, error=FormatError, hint: str = "save it as UTF-8") -> str:
    """`raw` as UTF-8 text, a byte-order mark read past; a common binary file is named for what it is."""
    try:
        return codecs.decode(raw, "utf-8-sig")
    except UnicodeDecodeError as failure:
        refuse_binary(raw[:512], source, error)
        line = raw.count(b"\n", 0, failure.start) + 1
        raise error(f"{source} is not UTF-8 text (byte {raw[failure.start]:#04x} at offset {failure.start}, line "
                    f"{line}: {failure.reason})", hint) from None


def parse_json(text, source: str, error=FormatError, hint: str = "fix the JSON"):
    """The JSON value of `text` (str, or bytes read as UTF-8), read by strict_json's rule; `source` names
    it in errors ("graph set manifest PATH")."""
    if isinstance(text, (bytes, bytearray)):
        text = decode_text(bytes(text), source, error)
    try:
        return strict_json.loads(text)
    except strict_json.JSONRefused as refused:
        raise error(f"{source}: {refused}", refused.hint) from None
    except json.JSONDecodeError as failure:
        refuse_binary(text[:512], source, error)
        if "\n" not in text:  # one line (of JSON Lines): json's "line 1" would contradict the line named
            at = " " if failure.msg.endswith(" at") else " at "  # json's "Unterminated string starting at"
            raise error(f"{source} is not valid JSON ({failure.msg}{at}column {failure.colno})", hint) from None
        raise error(f"{source} is not valid JSON: {failure}", hint) from None


def read_bytes(path, what: str, error=FormatError) -> bytes:
    """The bytes of file `path`; a folder, a missing or unreadable file is `error`, naming `what` it is."""
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory", f"give the path of the {what} file") from None
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", "check the path") from None
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror or failure}", "check the path and its "
                    "permissions") from None


def read_json(path, what: str, error=FormatError, hint: str = "fix the JSON"):
    """The JSON value of file `path`, read as parse_json reads it; `what` names the kind of file."""
    return parse_json(read_bytes(path, what, error), f"{what} {path}", error, hint)


def text_lines(stream, source: str, error=FormatError):
    """(line number, text) of a binary `stream` of UTF-8, one line in memory at a time. Lines end at \\n, \\r\\n or
    a lone \\r (as Python's text files read them), not at the U+2028 and U+0085 that JSON strings may hold
    unescaped (where str.splitlines would cut); a byte-order mark is read past. Read as bytes, so a decoding
    error names its line (and the first line what the file is, when it is a common binary one)."""
    number = 0
    for raw in stream:  # bytes up to and including each \n
        try:
            text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
        except UnicodeDecodeError as failure:
            if number == 0:
                refuse_binary(raw[:512], source, error)
            raise error(f"{source}, line {number + 1}: not UTF-8 text (byte {raw[failure.start]:#04x} at offset "
                        f"{failure.start} of the line: {failure.reason})", "save it as UTF-8") from None
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text  # \r\n is one line end
        for line in text.split("\r"):  # JSON strings cannot hold a raw \r: each one ends a line
            number += 1
            yield number, line


def json_lines(stream, source: str, error=FormatError, hint: str = "write one JSON value per line"):
    """(line number, value) of each non-blank line of a binary `stream` of JSON Lines, each line read as
    parse_json reads a file."""
    for number, line in text_lines(stream, source, error):
        if line.strip():
            yield number, parse_json(line, f"{source}, line {number}", error, hint)


def read_json_lines(path, what: str, error=FormatError, hint: str = "write one JSON value per line") -> list:
    """[value] of the non-blank lines of JSON Lines file `path`, read as json_lines reads them."""
    from pathlib import Path

    try:
        with open(path, "rb") as stream:
            return [value for _, value in json_lines(stream, f"{what} {Path(path)}", error, hint)]
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror or failure}", "check the path") from None
