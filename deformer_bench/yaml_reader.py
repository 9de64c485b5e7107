"""The one YAML reader: every YAML file the project reads (profiles, training queues) goes through it.

PyYAML keeps the last value of a key given twice in one mapping without a word (a queue's second `runs:` list
dropped the first one): refused here at any depth, naming the key, the file and its lines. YAML's .nan and .inf
are YAML, and pass (a profile refuses them where it reads numbers). Text that is not UTF-8 is refused as
contracts.readers refuses it (naming what a common binary file is). Errors are `error` (a DeformerBenchError
subclass: the caller's own), with `what` naming the kind of file.
"""

import io

import yaml

from .contracts.readers import FormatError, decode_text, read_bytes, refuse_binary


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
