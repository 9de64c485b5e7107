"""cache.json's schema: every field, its type and its range, checked whole when a cache is opened.

Readers, `info`, `verify` and builds (`--append`, a resume) all open a cache through store.read_record, so a
record edited into another shape is one clear error there, before anything is read or written, not a KeyError
in whichever command touches the field first.

Format 4 adds `unfinished_build` to format 3: what the build that was started and not yet finished will store (the
sha256 of its distinct window keys, sorted, and their count), whether it appends to a complete cache, and the
command that started it. A format 3 record whose build finished reads as format 4 with no unfinished build; one
whose build did not finish cannot say what it was started with, and is refused.

Format 5 adds `codec`: null for the float32, float16 and int8 dtypes; for a learned codec (dtype pq, rq or binary:
quantizers/) its name, settings, the sample it was trained on and the sha256 of each codebook file (folder
codebook/ of the cache, one .npy an array). Such a cache's segments store the codes (passage_NAME.npy) and each
window's length (passage_length.npy, uint16) in place of states and attention mask. Format 3 and 4 records read as
format 5 with no codec.
"""

import re

from ..contracts.errors import PassageCacheError
from .codecs import DTYPES
from .quantizers import CODECS

FORMAT_VERSION = 5
READABLE_FORMATS = (3, 4, 5)
LEARNED_DTYPES = tuple(CODECS)  # pq, rq, binary: a codebook learned at build
SEGMENT_NAME = re.compile(r"^segment-(\d{5,})$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
REBUILD = "remove the cache directory and build it again (deformer-cache build)"


class RecordError(Exception):
    """One field of a record that does not fit the schema: `where` (a dotted path) and what is wrong."""

    def __init__(self, where: str, what: str):
        super().__init__(f"'{where}' {what}")


def integer(minimum: int):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise RecordError(where, f"must be a whole number of at least {minimum}, found {value!r}")
    return check


def number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:  # NaN fails too
        raise RecordError(where, f"must be a number of at least 0, found {value!r}")


def text(value, where):
    """A string that prints as itself: messages show these fields, and a control character (a terminal escape)
    in an edited record must not reach the terminal."""
    if not (isinstance(value, str) and value.isprintable()):
        raise RecordError(where, f"must be a string of printable characters, found {value!r}"[:200])


def flag(value, where):
    if not isinstance(value, bool):
        raise RecordError(where, f"must be true or false, found {value!r}")


def sha256(value, where):
    if not (isinstance(value, str) and SHA256.match(value)):
        raise RecordError(where, f"must be a sha256 (64 lowercase hex digits), found {value!r}")


def one_of(*allowed):
    def check(value, where):
        if value not in allowed or isinstance(value, bool):
            raise RecordError(where, f"must be one of {', '.join(map(repr, allowed))}, found {value!r}")
    return check


def nullable(check):
    def check_or_null(value, where):
        if value is not None:
            check(value, where)
    return check_or_null


def either(*checks):
    def check(value, where):
        errors = []
        for option in checks:
            try:
                return option(value, where)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError(where, f"fits none of its forms ({'; '.join(errors)})")
    return check


def mapping(fields: dict, optional: tuple = ()):
    """An object with exactly these keys (those in `optional` may be absent), each checked."""
    def check(value, where):
        if not isinstance(value, dict):
            raise RecordError(where, f"must be an object, found {value!r}"[:200])
        missing = [key for key in fields if key not in value and key not in optional]
        unknown = [key for key in value if key not in fields]
        if missing or unknown:
            raise RecordError(where, "; ".join(([f"lacks {', '.join(missing)}"] if missing else [])
                                               + ([f"holds unknown {', '.join(map(repr, unknown))}"[:200]]
                                                  if unknown else [])))
        for key, check_field in fields.items():
            if key in value:
                check_field(value[key], f"{where}.{key}")
    return check


def list_of(check_item):
    def check(value, where):
        if not isinstance(value, list):
            raise RecordError(where, f"must be a list, found {value!r}"[:200])
        for index, item in enumerate(value):
            check_item(item, f"{where}[{index}]")
    return check


def dict_of(check_value):
    def check(value, where):
        if not isinstance(value, dict):
            raise RecordError(where, f"must be an object, found {value!r}"[:200])
        for key, item in value.items():
            check_value(item, f"{where}.{key}")
    return check


def segment_name(value, where):
    if not (isinstance(value, str) and SEGMENT_NAME.match(value)):
        raise RecordError(where, f"must be a segment name (segment-NNNNN), found {value!r}")


IDENTITY = mapping({"lower_passage_sha256": sha256, "model_fingerprint_sha256": sha256, "layer": integer(0),
                    "passage_len": integer(1), "hidden_size": integer(1), "vocab_size": integer(1), "variant": text})
SEGMENT = mapping({"name": segment_name, "windows": integer(1), "sha256": dict_of(sha256)})
RAY_ENGINE = mapping({"engine": one_of("ray"), "address": text, "workers": integer(1), "cpus_per_worker": number,
                      "cluster_cpus": number, "threads_per_session": integer(1)},
                     optional=("workers", "cpus_per_worker", "cluster_cpus", "threads_per_session"))
BUILD = mapping({"passages": nullable(integer(0)), "windows_given": integer(0), "distinct_windows": integer(0),
                 "new_windows": integer(0), "seconds": number, "windows_per_second": nullable(number),
                 "engine": either(one_of("local"), RAY_ENGINE), "pid": integer(0)})
UNFINISHED_BUILD = mapping({"windows_sha256": sha256, "windows": integer(0), "append": flag,
                            "command": nullable(text)})


def setting(value, where):
    """A codec setting: a JSON scalar (a whole number, a number, a string, true/false or null)."""
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        return number(abs(value), where)  # finite (the strict reader refuses NaN and Infinity anyway)
    text(value, where)


CODEC = mapping({"name": one_of(*LEARNED_DTYPES), "settings": dict_of(setting), "codebook": dict_of(sha256),
                 "sample": mapping({"windows": integer(1), "tokens": integer(1), "seed": integer(0)})})
FIELDS = {"format_version": one_of(*READABLE_FORMATS), "identity": IDENTITY, "dtype": one_of(*DTYPES),
          "doc_stride": nullable(integer(1)), "tokenizer_sha256": nullable(sha256), "segments": list_of(SEGMENT),
          "windows": integer(0), "complete": flag, "build_seconds": number, "builds": list_of(BUILD),
          "unfinished_build": nullable(UNFINISHED_BUILD)}
RECORD = {3: mapping({key: check for key, check in FIELDS.items() if key != "unfinished_build"},
                     optional=("build_seconds",)),
          4: mapping(FIELDS, optional=("build_seconds",)),
          5: mapping({**FIELDS, "dtype": one_of(*DTYPES, *LEARNED_DTYPES), "codec": nullable(CODEC)},
                     optional=("build_seconds",))}
CODEBOOK_FOLDER = "codebook"


def segment_files(dtype: str) -> set:
    """The file names a segment of this dtype holds (cache_files.expected_arrays' stems); a learned codec's: its code
    arrays (quantizers.Codec.CODES) and the windows' lengths in place of the mask."""
    if dtype in LEARNED_DTYPES:
        return {"window_key.npy", "passage_input_ids.npy", "passage_length.npy",
                *(f"passage_{name}.npy" for name in CODECS[dtype].CODES)}
    return {"window_key.npy", "passage_input_ids.npy", "passage_attention_mask.npy", "passage_hidden.npy",
            *(("passage_scale.npy",) if dtype == "int8" else ())}


def check_consistency(record: dict) -> None:
    """What no single field says: the fields agree with each other."""
    names = [entry["name"] for entry in record["segments"]]
    if len(set(names)) != len(names):
        raise RecordError("segments", f"lists a segment twice ({sorted({n for n in names if names.count(n) > 1})})")
    if record["windows"] != sum(entry["windows"] for entry in record["segments"]):
        raise RecordError("windows", f"is {record['windows']}, and its segments hold "
                                     f"{sum(entry['windows'] for entry in record['segments'])}")
    for index, entry in enumerate(record["segments"]):
        if set(entry["sha256"]) != segment_files(record["dtype"]):
            raise RecordError(f"segments[{index}].sha256", f"must name the files of a {record['dtype']} segment "
                                                           f"({', '.join(sorted(segment_files(record['dtype'])))})")
    codec = record.get("codec")
    if record["dtype"] in LEARNED_DTYPES and (codec is None or codec["name"] != record["dtype"]):
        raise RecordError("codec", f"must describe the {record['dtype']} codec the cache stores, found {codec!r}"[:200])
    if record["dtype"] not in LEARNED_DTYPES and codec is not None:
        raise RecordError("codec", f"must be null for dtype {record['dtype']}")
    unfinished = record.get("unfinished_build")
    if record["format_version"] >= 4 and not record["complete"] and (unfinished is None or unfinished["append"]):
        raise RecordError("unfinished_build", "must describe the build that was started, since 'complete' is false")
    if record["format_version"] >= 4 and record["complete"] and unfinished is not None and not unfinished["append"]:
        raise RecordError("unfinished_build", "can only be an append, since 'complete' is true")


def checked_record(record, path) -> dict:
    """`record` (cache.json, parsed) if it fits the schema of its format version, as a format 4 record; else a
    PassageCacheError naming the field."""
    if not isinstance(record, dict):
        raise PassageCacheError(f"{path} is not a passage cache record (a JSON object)", REBUILD)
    version = record.get("format_version")
    if version not in READABLE_FORMATS or isinstance(version, bool):
        raise PassageCacheError(f"{path} has format_version {version!r}; this version reads "
                                f"{' and '.join(map(str, READABLE_FORMATS))}", REBUILD)
    try:
        RECORD[version](record, "cache.json")
        check_consistency(record)
    except RecordError as error:
        raise PassageCacheError(f"{path} is not a valid passage cache record: {error}", REBUILD) from None
    if version == 3:
        if not record["complete"]:
            raise PassageCacheError(f"{path} was written by an earlier version (format 3) and its build did not "
                                    "finish: the record does not say which passages it was started with", REBUILD)
        record = {**record, "format_version": 4, "unfinished_build": None}
    if record["format_version"] == 4:  # written as 5 when next saved
        record = {**record, "format_version": FORMAT_VERSION, "codec": None}
    return record
