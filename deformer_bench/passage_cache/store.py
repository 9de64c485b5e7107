"""The passage cache on disk: segments of memory-mapped numpy arrays, a record with their checksums, and reads.

DeFormer's passage states at layer k never see the question, so every question asked of a passage can share
them. On SQuAD a paragraph has ~5 questions and each of its windows is the same token sequence for all of
them: the dev set's 12,597 (question, window) pairs hold only 2,438 distinct windows (MiniLM tokens, 224-token
windows, stride 128).

A cache is a directory:
  cache.json                  format version; the identity of the lower_passage graph it was built with (sha256,
                              model fingerprint, k, lengths, hidden size); the stored dtype; the doc stride the
                              windows were cut with; every segment with its window count and each file's sha256;
                              whether the build finished; one entry per build or append; the build started
                              and not yet finished (what it will store, the command that started it); its
                              schema, checked whole at open: schema.py
  segment-00000/              written whole under a temporary name, then renamed; listed in cache.json after
    window_key.npy            [n, 16] uint8   the lookup key: blake2b-128 of the window's exact ids and mask
    passage_input_ids.npy     [n, Lp] uint16  each window's token ids (int32 for a vocabulary past 65,536) ...
    passage_attention_mask.npy[n, Lp] uint8   ... and mask: what the key was made of, kept to rebuild from
    passage_hidden.npy        [n, Lp, H]      float32, float16 or int8 (codecs.py)
    passage_scale.npy         [n, Lp] float32 int8 only: one scale per token
  A cache of a learned codec (dtype pq, rq or binary: quantizers/; format 5) stores, in place of the mask and
  states, passage_length.npy ([n] uint16: the mask is a window's leading `length` ones) and its codes
  (passage_codes.npy; passage_centroid and passage_residual; passage_signs and passage_scale, float16), and once
  per cache the codebook they decode with:
  codebook/NAME.npy           each listed with its sha256 in cache.json's codec entry, checked whenever the cache
                              is opened (a codebook is ~1 MB; a damaged one would decode every window wrong)

Keys are 16-byte digests, not the windows' bytes (format 2 used the ids and mask themselves: 3,584 bytes per
224-token window in memory, ~100 GB of index for a 21M-passage corpus); the index is built from window_key.npy
alone, 16 bytes a window read at the first lookup, and held as sorted arrays (key_index.py: 32 bytes a window in
memory, where a dict of the keys took ~139). A collision of two distinct windows in 128 bits is not a practical concern
(~1e-24 for 27M windows). Ids and mask in the narrowest type that holds them: 672 bytes a window, not 3,584.

Why numpy files: each array is one .npy (a 128-byte header and the raw array), memory-mapped read-only with
numpy's own loader, readable by anything that reads .npy, with nothing to install. A read gathers a query's rows
from the map (runtime/cached_states.gather_rows); the benchmark's online_served path times exactly that read
against the in-memory online path: under 2% of the online latency (results/README.md). Growth is by new
segments (append never rewrites one), and a damaged file is found by its sha256.

What is open when: at open, each listed file's .npy header and size are read (shape, dtype, not truncated) and
closed again; the index of keys is read whole at the first lookup; the states are memory-mapped a segment at a
time as reads reach them, at most PassageCache.MAPPED_SEGMENTS at once (a map holds a file descriptor and a kernel
map: a 27M-window corpus in 1,024-window segments would otherwise need ~100k of each, past common limits).

When checksums are checked: structure (every listed file there, with the shape and dtype recorded) at open; the
content, per segment, the first time a read touches it (hashing runs at ~1 GB/s here: a whole 21M-passage corpus
could not be hashed at open, one segment costs a fraction of a second once). `deformer-cache verify` checks
every segment.
"""

import collections
import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contracts.errors import PassageCacheError
from ..contracts.hashing import file_sha256
from ..contracts.readers import read_json
from ..files import write_text_atomically
from ..runtime.cached_states import gather_rows
from .codecs import STORED, decode
from .key_index import KEY_BYTES, KeyIndex
from .lock import build_running
from .quantizers import CodecError, make_codec
from .schema import CODEBOOK_FOLDER, LEARNED_DTYPES, REBUILD, SEGMENT_NAME, checked_record

RECORD_FILE = "cache.json"


def window_keys(input_ids: np.ndarray, attention_mask: np.ndarray) -> list:
    """One 16-byte key per window ([N, Lp] ids and mask): a digest of the exact tokens (as int64, whatever type
    they are held in), so equal keys mean equal windows, hence equal states."""
    input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
    return [hashlib.blake2b(ids.tobytes() + mask.tobytes(), digest_size=KEY_BYTES).digest()
            for ids, mask in zip(input_ids, attention_mask)]


def id_dtype(vocab_size: int):
    """The narrowest integer type of stored token ids."""
    return np.uint16 if vocab_size <= 2**16 else np.int32


def distinct_windows(input_ids: np.ndarray, attention_mask: np.ndarray):
    """(first, row_of): `first` [U] indexes each distinct window's first occurrence; `row_of` [N] maps every
    window to its distinct row, so input_ids[first][row_of] == input_ids."""
    row_by_key, first, row_of = {}, [], []
    for index, key in enumerate(window_keys(input_ids, attention_mask)):
        if key not in row_by_key:
            row_by_key[key] = len(first)
            first.append(index)
        row_of.append(row_by_key[key])
    return np.asarray(first, dtype=np.int64), np.asarray(row_of, dtype=np.int64)


def graph_identity(graph_set) -> dict:
    """What a cache must match: the lower_passage graph it came from (and, for the message, the model)."""
    manifest = graph_set.manifest
    return {"lower_passage_sha256": manifest["graphs"]["lower_passage"]["sha256"],
            "model_fingerprint_sha256": manifest["model"]["fingerprint_sha256"],
            "layer": manifest["deformer"]["layer"], "passage_len": manifest["deformer"]["passage_len"],
            "hidden_size": manifest["model"]["hidden_size"], "vocab_size": manifest["model"]["vocab_size"],
            "variant": manifest.get("variant", "float32")}


def human_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} bytes"


def check_free_space(out_dir: Path, needed_bytes: int) -> None:
    """Refuse up front: a memory-mapped file on a full disk fails with SIGBUS mid-write, not with an error."""
    parent = next(folder for folder in (out_dir, *out_dir.parents) if folder.exists())
    free = shutil.disk_usage(parent).free
    if free < needed_bytes:
        raise PassageCacheError(f"the passage cache needs {needed_bytes:,} bytes ({human_bytes(needed_bytes)}) "
                                f"and {parent} has {free:,} free",
                                "give the cache a directory on a disk with room (or set TMPDIR)")


def segment_name(index: int) -> str:
    return f"segment-{index:05d}"


def expected_arrays(dtype: str, windows: int, identity: dict, codec=None) -> dict:
    """{file stem: (shape, numpy dtype)} of one segment of a cache of this graph `identity` (`codec`: the learned
    codec of dtype pq, rq or binary, quantizers.Codec)."""

    passage_len, hidden_size = identity["passage_len"], identity["hidden_size"]
    arrays = {"window_key": ((windows, KEY_BYTES), np.uint8),
              "passage_input_ids": ((windows, passage_len), id_dtype(identity["vocab_size"]))}
    if dtype in LEARNED_DTYPES:
        arrays["passage_length"] = ((windows,), np.uint16)
        for name, (tail, stored) in codec.arrays().items():
            arrays[f"passage_{name}"] = ((windows, passage_len, *tail), stored)
        return arrays
    arrays.update(passage_attention_mask=((windows, passage_len), np.uint8),
                  passage_hidden=((windows, passage_len, hidden_size), STORED[dtype]))
    if dtype == "int8":
        arrays["passage_scale"] = ((windows, passage_len), np.float32)
    return arrays


@dataclass
class Segment:
    """One listed segment: its files' headers checked at open, arrays memory-mapped when first read (see
    PassageCache.array), its checksums checked at first read."""

    directory: Path
    name: str
    windows: int
    sha256: dict  # {file name: sha256}
    shapes: dict = field(default_factory=dict)  # {file stem: (shape, numpy dtype)}
    arrays: dict = field(default_factory=dict)  # the arrays mapped so far
    verified: bool = False

    def path(self, stem: str) -> Path:
        return self.directory / self.name / f"{stem}.npy"

    def verify(self) -> None:
        """Every file's sha256 against the record; a PassageCacheError names the first that differs."""
        for file_name, expected in self.sha256.items():
            if file_sha256(self.directory / self.name / file_name) != expected:
                raise PassageCacheError(f"passage cache {self.directory}: {self.name}/{file_name} is damaged "
                                        "(its sha256 differs from the one recorded when it was written)", REBUILD)
        self.verified = True


def codebook_path(directory: Path, name: str) -> Path:
    return Path(directory) / CODEBOOK_FOLDER / f"{name}.npy"


def load_codec(directory: Path, record: dict):
    """The learned codec a cache stores (quantizers.Codec, decoding with numpy only), its codebook files checked
    against their sha256; None for float32, float16 and int8."""
    entry = record.get("codec")
    if entry is None:
        return None
    codebook = {}
    for name, expected in entry["codebook"].items():
        path = codebook_path(directory, name)
        try:
            damaged = file_sha256(path) != expected
        except OSError as error:
            raise _file_error(path, error) from None
        if damaged:
            raise PassageCacheError(f"passage cache {directory}: its codebook file {CODEBOOK_FOLDER}/{name}.npy is "
                                    "damaged (its sha256 differs from the one recorded when it was written): "
                                    "every window would decode wrong", REBUILD)
        try:
            codebook[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise PassageCacheError(f"passage cache file {path} is damaged ({error})", REBUILD) from None
    try:
        return make_codec(entry["name"], record["identity"]["hidden_size"], codebook, **entry["settings"])
    except CodecError as error:
        raise PassageCacheError(f"passage cache {directory}: its codec entry does not describe a codec "
                                f"({error.message})", REBUILD) from None


def read_record(directory: Path) -> dict:
    """cache.json, checked whole against its schema (schema.py); a directory that is not a cache is one clear
    error."""
    record_path = directory / RECORD_FILE
    if not record_path.is_file():
        hint = ("it was written by an earlier version (format 1): " + REBUILD) if (directory / "passage_cache.json").is_file() \
            else "give a new directory to build a cache in, or one written by deformer-cache / deformer-eval"
        raise PassageCacheError(f"{directory} is not a passage cache of this version (no {RECORD_FILE})", hint)
    return checked_record(load_record_json(record_path), record_path)


def load_record_json(record_path: Path):
    """cache.json parsed, whatever its shape (checked_record checks that): the one place it is read, by the one
    JSON reader (a key given twice, NaN or Infinity is refused, not read as whichever value Python keeps)."""
    return read_json(record_path, "passage cache record", PassageCacheError, REBUILD)


def save_record(directory: Path, record: dict) -> None:
    write_text_atomically(directory / RECORD_FILE, json.dumps(record, indent=1) + "\n")


def check_identity(record: dict, directory: Path, graph_set) -> None:
    identity, theirs = graph_identity(graph_set), record["identity"]
    if theirs.get("lower_passage_sha256") != identity["lower_passage_sha256"]:
        raise PassageCacheError(
            f"passage cache {directory} was built with another lower_passage graph (model "
            f"{str(theirs.get('model_fingerprint_sha256'))[:12]}, k={theirs.get('layer')}, "
            f"{theirs.get('variant', 'float32')}) than {graph_set.directory} (model "
            f"{identity['model_fingerprint_sha256'][:12]}, k={identity['layer']}, {identity['variant']})",
            "give a new cache directory, or the graph set (and variant) the cache was built with")


def tokenizer_sha256(tokenizer) -> str:
    """The tokenizer's identity for the cache record: its vocabulary and special tokens."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps([vocabulary, tokenizer.all_special_tokens]).encode()).hexdigest()


def check_windows_cut(record: dict, directory: Path, doc_stride=None, tokenizer_identity=None) -> None:
    """Refuse windows cut with another doc stride or tokenizer than the cache's (where both are known): their
    windows would be other token sequences, found missing, not wrong."""
    if doc_stride is not None and record.get("doc_stride") not in (None, doc_stride):
        raise PassageCacheError(f"passage cache {directory} was cut with doc stride {record['doc_stride']}, not "
                                f"{doc_stride}", f"use --doc-stride {record['doc_stride']}, or a new cache directory")
    if tokenizer_identity is not None and record.get("tokenizer_sha256") not in (None, tokenizer_identity):
        raise PassageCacheError(f"passage cache {directory} was cut with another tokenizer", "give --tokenizer the "
                                "model directory the cache was built with, or use a new cache directory")


SYSTEM_LIMITS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def _file_error(path: Path, error: OSError) -> PassageCacheError:
    if error.errno in SYSTEM_LIMITS:  # not damage: the cache is fine, the process ran out of files or maps
        return PassageCacheError(f"cannot open passage cache file {path}: {error.strerror} (a limit of this system, "
                                 "not damage to the cache)", "raise the limit (ulimit -n; sysctl vm.max_map_count), "
                                 "or build caches with larger segments (deformer-cache build --segment-windows)")
    return PassageCacheError(f"passage cache file {path} is damaged or missing ({error})", REBUILD)


def header_problems(found_shape, fortran_order: bool, found_dtype, shape: tuple, dtype) -> list:
    """What an array's .npy header says that differs from what the record expects, in words: shape, element
    type, byte order, memory order (a cache writes C-order arrays in this machine's byte order)."""
    problems, expected = [], np.dtype(dtype)
    if found_shape != shape:
        problems.append(f"its shape is {found_shape}, not {shape}")
    if found_dtype.newbyteorder("=") == expected.newbyteorder("=") and found_dtype != expected:
        problems.append(f"its {expected} is stored {'big' if found_dtype.byteorder == '>' else 'little'}-endian, "
                        f"not in this machine's byte order")
    elif found_dtype != expected:
        problems.append(f"its elements are {found_dtype}, not {expected}")
    if fortran_order:
        problems.append("it is stored in Fortran (column-major) order, not the C order a cache writes")
    return problems


def _check_header(path: Path, shape: tuple, dtype) -> None:
    """The .npy header says the recorded shape and dtype in C order, and the file holds all of its bytes (not
    truncated); nothing stays open."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"a .npy format version {version[0]}.{version[1]} file (a cache writes 1.0)")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            found_shape, fortran_order, found_dtype = read_header(handle)
            size = os.fstat(handle.fileno()).st_size
            data_start = handle.tell()
    except OSError as error:
        raise _file_error(path, error) from None
    except (ValueError, EOFError) as error:
        raise PassageCacheError(f"passage cache file {path} is damaged ({error})", REBUILD) from None
    problems = header_problems(found_shape, fortran_order, found_dtype, shape, dtype)
    if problems:
        raise PassageCacheError(f"passage cache file {path} is damaged: {'; '.join(problems)}", REBUILD)
    if size != data_start + int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise PassageCacheError(f"passage cache file {path} is damaged: {size:,} bytes, not the "
                                f"{data_start + int(np.prod(shape)) * np.dtype(dtype).itemsize:,} its header needs "
                                "(truncated?)", REBUILD)


def _open_array(path: Path, shape: tuple, dtype, mmap: bool = True) -> np.ndarray:
    """The .npy of the recorded shape and dtype, memory-mapped (or read whole); anything else is damage, not a
    numpy traceback."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except OSError as error:
        raise _file_error(path, error) from None
    except (ValueError, EOFError) as error:
        raise PassageCacheError(f"passage cache file {path} is damaged or missing ({error})", REBUILD) from None
    fortran_order = array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous
    problems = header_problems(array.shape, fortran_order, array.dtype, shape, dtype)
    if problems:  # the file changed since the cache was opened (open checked its header)
        raise PassageCacheError(f"passage cache file {path} is damaged: {'; '.join(problems)}", REBUILD)
    return array


class PassageCache:
    """An opened cache: every listed segment's files checked (headers and sizes), an index from window key to
    global row built at first lookup from the 16-byte keys (key_index.py), the states memory-mapped segment by
    segment as reads reach them. At most MAPPED_SEGMENTS segments stay mapped (least recently read first out):
    each map holds a file descriptor and a kernel map, and a corpus has tens of thousands of segments."""

    MAPPED_SEGMENTS = 256

    def __init__(self, directory: Path, record: dict):
        self.directory, self.info = Path(directory), record
        identity = record["identity"]
        self.codec = load_codec(self.directory, record)
        self.segments, self.offsets = [], []
        offset = 0
        for entry in record["segments"]:
            shapes = expected_arrays(record["dtype"], entry["windows"], identity, self.codec)
            segment = Segment(self.directory, entry["name"], entry["windows"], entry["sha256"], shapes)
            for stem, (shape, dtype) in shapes.items():
                _check_header(segment.path(stem), shape, dtype)
            self.segments.append(segment)
            self.offsets.append(offset)
            offset += entry["windows"]
        self.windows = offset
        self._key_index = None
        self._mapped = collections.OrderedDict()  # segment index -> None, least recently read first

    def array(self, index: int, stem: str) -> np.ndarray:
        """Segment `index`'s array `stem`, memory-mapped at its first read."""
        segment = self.segments[index]
        if stem not in segment.arrays:
            shape, dtype = segment.shapes[stem]
            segment.arrays[stem] = _open_array(segment.path(stem), shape, dtype)
        self._mapped[index] = None
        self._mapped.move_to_end(index)
        while len(self._mapped) > self.MAPPED_SEGMENTS:
            oldest, _ = self._mapped.popitem(last=False)
            self.segments[oldest].arrays.clear()  # the maps close with their last reference
        return segment.arrays[stem]

    @property
    def key_index(self) -> KeyIndex:
        """Window key -> global row (key_index.py: sorted arrays, 32 bytes a window), built at first lookup:
        `info` and `verify` need no index."""
        if self._key_index is None:
            self._key_index = KeyIndex(np.concatenate(
                [_open_array(segment.path("window_key"), *segment.shapes["window_key"], mmap=False)
                 for segment in self.segments] or [np.zeros((0, KEY_BYTES), np.uint8)]))
        return self._key_index

    def lookup(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[N] global rows of these windows, -1 where the cache lacks one."""
        return self.key_index.lookup(window_keys(input_ids, attention_mask))

    def rows(self, input_ids: np.ndarray, attention_mask: np.ndarray, fix: str = None) -> np.ndarray:
        """[N] cache rows of these windows; every window must be in the cache. `fix`: the hint, in the words of
        the caller's command, of how to add the windows the cache lacks."""
        rows = self.lookup(input_ids, attention_mask)
        missing = int((rows < 0).sum())
        if missing:
            what = f"passage cache {self.directory} lacks {missing} of the {len(rows)} passage windows asked for"
            if not self.info["complete"]:
                raise PassageCacheError(f"{what} (it holds {self.windows}, and its build did not finish)",
                                        resume_hint(self.info["unfinished_build"]))
            unlisted = unlisted_segments(self.directory, self.info)
            reason = (f"and {', '.join(unlisted)} in its folder is listed by no cache.json entry: deformer-cache "
                      "verify says more" if unlisted else "built for other passages or another doc stride")
            raise PassageCacheError(f"{what} (it holds {self.windows}, {reason})",
                                    fix or "add them with deformer-cache build --append (the cache's --dtype and "
                                           "--doc-stride), or give a new cache directory")
        return rows

    def passage_hidden(self, rows) -> np.ndarray:
        """[B, Lp, H] float32 states of these global rows, in memory (decoded; each segment read is first
        checked against its sha256)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.windows):
            raise PassageCacheError(f"passage cache {self.directory} has rows 0..{self.windows - 1}; asked for "
                                    f"{rows.min()}..{rows.max()} (-1: a window lookup() did not find)",
                                    "look windows up with rows(), which refuses missing ones")
        identity = self.info["identity"]
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), identity["passage_len"], identity["hidden_size"]), dtype=np.float32)
        for index in np.unique(which):
            segment, picked = self.segments[index], np.flatnonzero(which == index)
            if not segment.verified:
                segment.verify()
            local = rows[picked] - self.offsets[index]
            if self.codec is not None:  # decoded here, for the windows asked for only
                codes = {name: gather_rows(self.array(index, f"passage_{name}"), local) for name in self.codec.CODES}
                out[picked] = self.codec.decode(codes, gather_rows(self.array(index, "passage_length"), local))
                continue
            scale = self.array(index, "passage_scale") if "passage_scale" in segment.shapes else None
            out[picked] = decode(gather_rows(self.array(index, "passage_hidden"), local),
                                 None if scale is None else gather_rows(scale, local))
        return out

    def verify(self) -> None:
        """Every listed segment's sha256, and no segment folder that no entry lists (its windows would be missing
        from the cache, and from the record's count, without a word)."""
        check_listing(self.directory, self.info)
        for segment in self.segments:
            segment.verify()


def mask_of_lengths(lengths, passage_len: int) -> np.ndarray:
    """[n, Lp] uint8 attention masks of windows of these lengths (leading ones)."""
    return (np.arange(passage_len)[None, :] < np.asarray(lengths).reshape(-1, 1)).astype(np.uint8)


def lengths_of_masks(attention_mask: np.ndarray) -> np.ndarray:
    """[n] uint16 lengths of these [n, Lp] masks; a mask that is not leading ones (then zeros) cannot be stored
    as a length, and is refused."""
    attention_mask = np.asarray(attention_mask)
    lengths = attention_mask.sum(axis=1)
    if not np.array_equal(mask_of_lengths(lengths, attention_mask.shape[1]), attention_mask != 0):
        raise PassageCacheError("a passage window's attention mask is not its leading tokens (ones, then zeros): a "
                                "learned codec's cache stores masks as lengths", "store such windows as float32, "
                                "float16 or int8 (--dtype)")
    return lengths.astype(np.uint16)


def unlisted_segments(directory: Path, record: dict) -> list:
    """Names of segment folders in `directory` that no cache.json entry lists, sorted: a build killed between
    renaming a segment into place and listing it, or an entry removed from cache.json."""
    listed = {entry["name"] for entry in record["segments"]}
    return sorted(entry.name for entry in Path(directory).iterdir()
                  if SEGMENT_NAME.match(entry.name) and entry.name not in listed and entry.is_dir())


def check_listing(directory: Path, record: dict) -> None:
    """Refuse segment folders no entry lists, saying where they likely came from and what to do."""
    unlisted = unlisted_segments(directory, record)
    if not unlisted:
        return
    what = f"passage cache {directory}: {', '.join(unlisted)} {'is' if len(unlisted) == 1 else 'are'} in its " \
           f"folder, and no cache.json entry lists {'it' if len(unlisted) == 1 else 'them'}"
    if build_running(directory):
        raise PassageCacheError(f"{what} (a build is writing this cache now)",
                                "verify it when that build has finished")
    unfinished = record.get("unfinished_build")
    if unfinished is not None:
        raise PassageCacheError(f"{what}: a build killed between writing a segment and listing it leaves one",
                                f"{resume_hint(unfinished)} (it removes segments no entry lists)")
    raise PassageCacheError(f"{what}: an entry was removed from cache.json, or the folder was put there",
                            "remove the folder (its windows are not served), or remove the cache directory and "
                            "build it again")


def resume_hint(unfinished: dict) -> str:
    """How the unfinished build goes on: the command that started it, when one did."""
    if unfinished.get("command"):
        return f"go on with the command that started it: {unfinished['command']}"
    return ("go on with the same passages and settings it was started with (the library call that started it "
            "recorded no command)")


def load_passage_cache(directory, graph_set=None) -> PassageCache:
    """Open a cache; with `graph_set`, refuse one built with another lower_passage graph."""
    directory = Path(directory)
    record = read_record(directory)
    if graph_set is not None:
        check_identity(record, directory, graph_set)
    return PassageCache(directory, record)
