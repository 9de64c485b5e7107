"""JSON as the format says, and nothing Python's json module adds: the standard library only, so that the
benchmark runner (staged on the measured machine with this package) reads its job by the same rule as the host
reads every JSON file (deformer_bench.readers, which wraps this in the caller's typed errors).

- a key given twice in one object, at any depth, is refused (json keeps the last one without a word);
- NaN, Infinity and -Infinity are refused: Python writes and reads them, but they are not JSON;
- a number no float holds (1e400, which Python would read as inf) is refused, and so is what Python cannot read
  (an integer of more than 4,300 digits) or nest as deep (not a RecursionError or a bare ValueError).
Syntax errors are json.JSONDecodeError, as json raises them.
"""

import json
import json.decoder
import json.scanner
import re


class JSONRefused(ValueError):
    """Valid to Python's json, not to JSON: `str()` says what and where, `hint` what to write instead."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


class _DuplicateKey(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key, self.line = key, None


def _unique_object(pairs):
    """json's object_pairs_hook: the object, or _DuplicateKey for a key given twice."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _NonFiniteConstant(ValueError):
    pass


def _refuse_constant(name):
    raise _NonFiniteConstant(name)


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    """json's parse_float: 1e400 is JSON, but no float holds it (Python would read it as inf)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _OutOfRange(text)
    return value


# A JSON string, or one of the constants Python writes for non-finite floats (outside strings, only those).
_STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|NaN|-?Infinity', re.DOTALL)


def _constant_position(text: str):
    """(line, column) of the first NaN or Infinity outside a string."""
    for match in _STRING_OR_CONSTANT.finditer(text):
        if not match.group().startswith('"'):
            return (text.count("\n", 0, match.start()) + 1,
                    match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1)
    return None


def _duplicate_key_line(text: str):
    """The line of the object that gives a key twice: only the error path reads the text again, with json's
    pure-Python scanner, whose object parser knows where each object starts."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_refuse_constant)

    def parse_object(s_and_end, *args):
        try:
            return json.decoder.JSONObject(s_and_end, *args)
        except _DuplicateKey as duplicate:
            if duplicate.line is None:  # the innermost object's, not its parents'
                duplicate.line = s_and_end[0].count("\n", 0, s_and_end[1]) + 1
            raise

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        decoder.decode(text)
    except _DuplicateKey as duplicate:
        return duplicate.line
    except (ValueError, RecursionError):
        pass
    return None


def loads(text: str):
    """The JSON value of `text` (a leading byte-order mark is read past); JSONRefused for what JSON does not
    allow, json.JSONDecodeError for text that is not JSON at all."""
    text = text[1:] if text.startswith("\ufeff") else text
    one_line = "\n" not in text  # a JSON Lines line: its own line is named by the caller
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_refuse_constant,
                          parse_float=_finite_float)
    except _DuplicateKey as duplicate:
        line = None if one_line else _duplicate_key_line(text)
        where = f"the object that starts on line {line}" if line else "one object"
        raise JSONRefused(f"key {duplicate.key!r} is given twice in {where} (JSON readers differ on which one "
                          "counts)", "keep one of them") from None
    except _NonFiniteConstant as constant:
        where = _constant_position(text)
        at = "" if where is None else f" (column {where[1]})" if one_line else f" (line {where[0]} column {where[1]})"
        raise JSONRefused(f"{constant} is not a JSON number{at}",
                          "write a finite number, or null where there is none") from None
    except _OutOfRange as number:
        raise JSONRefused(f"the number {number} is beyond a float's range", "write a smaller number") from None
    except RecursionError:
        raise JSONRefused("arrays or objects nest too deeply to read", "nest them less deeply") from None
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            raise
        # Python's own limits, e.g. an integer of more than 4,300 digits: first line only
        raise JSONRefused(f"a value Python cannot read: {str(error).split(':')[0]}", "write a shorter number") from None
