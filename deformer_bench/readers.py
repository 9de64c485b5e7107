"""The one reader for JSON and the one for YAML: every JSON or YAML file the project reads goes through them.

Python's own readers accept what the formats do not say, and keep quiet about it:
- a key given twice in one object or mapping keeps the last value (a queue's second `runs:` list dropped the
  first one without a word): refused here at any depth, naming the key and the file (YAML: the lines too);
- `json` reads NaN, Infinity and -Infinity, which are not JSON (no other reader takes them): refused, naming
  the line. YAML's .nan and .inf are YAML, and pass (a profile refuses them where it reads numbers);
- text that is not UTF-8 is refused naming the byte, its offset and line, and what the file looks like when it
  is a common wrong one (gzip, zip, a NumPy array, UTF-16, ...: `describe_binary`). A byte-order mark is read
  past.
Errors are `error` (a DeformerBenchError subclass: the caller's own, e.g. ManifestError for a manifest), with
`what` naming the kind of file ("graph set manifest") and a hint of what to give instead.
"""

import codecs
import json

import yaml

from .errors import DeformerBenchError
from .runtime import strict_json


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
    """The JSON value of `text` (str, or bytes read as UTF-8), read by runtime.strict_json's rule; `source` names
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
            raise error(f"{source} is not valid JSON ({failure.msg} at column {failure.colno})", hint) from None
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


class _DuplicateYamlKey(yaml.YAMLError):
    def __init__(self, key, first_line: int, line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first_line, self.line = key, first_line, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        first_lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first_lines:
                    raise _DuplicateYamlKey(key, first_lines[key], line)
                first_lines[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text, source: str, error=FormatError, hint: str = "fix the YAML syntax", name: str = None):
    """The YAML document of `text` (str, or bytes read as UTF-8), as yaml.safe_load reads it, with keys unique;
    `name`: the file's name in PyYAML's own messages (default `source`)."""
    import io

    if isinstance(text, (bytes, bytearray)):
        text = decode_text(bytes(text), source, error)
    stream = io.StringIO(text)
    stream.name = name or source  # YAML errors then name the file, not "<unicode string>"
    try:
        return yaml.load(stream, Loader=_UniqueKeyLoader)
    except _DuplicateYamlKey as duplicate:
        where = (f"line {duplicate.line}" if duplicate.line == duplicate.first_line
                 else f"lines {duplicate.first_line} and {duplicate.line}")
        raise error(f"{source}: {duplicate.key!r} is given twice ({where})", "keep one of them") from None
    except yaml.YAMLError as failure:
        refuse_binary(text[:512], source, error)
        raise error(f"{source} is not valid YAML: {failure}", hint) from None
    except RecursionError:
        raise error(f"{source} nests lists or mappings too deeply to read", hint) from None


def read_yaml(path, what: str, error=FormatError, hint: str = "fix the YAML syntax"):
    """The YAML document of file `path`, read as parse_yaml reads it; `what` names the kind of file."""
    return parse_yaml(read_bytes(path, what, error), f"{what} {path}", error, hint, name=str(path))


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
