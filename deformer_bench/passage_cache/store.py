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
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ..contracts.errors import PassageCacheError
from ..contracts.readers import read_json
from ..files import write_text_atomically
from ..runtime.cached_states import gather_rows
from .cache_files import Segment, check_header, expected_arrays, load_codec, open_array
from .codecs import decode
from .key_index import KEY_BYTES, KeyIndex
from .lock import build_running
from .schema import REBUILD, SEGMENT_NAME, checked_record

RECORD_FILE = "cache.json"


def window_keys(input_ids: np.ndarray, attention_mask: np.ndarray) -> list:
    """One 16-byte key per window ([N, Lp] ids and mask): a digest of the exact tokens (as int64, whatever type
    they are held in), so equal keys mean equal windows, hence equal states."""
    input_ids, attention_mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
    return [hashlib.blake2b(ids.tobytes() + mask.tobytes(), digest_size=KEY_BYTES).digest()
            for ids, mask in zip(input_ids, attention_mask)]


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
                check_header(segment.path(stem), shape, dtype)
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
            segment.arrays[stem] = open_array(segment.path(stem), shape, dtype)
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
                [open_array(segment.path("window_key"), *segment.shapes["window_key"], mmap=False)
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

    def passage_hidden(self, rows, positions: int = None) -> np.ndarray:
        """[B, positions, H] float32 states of these global rows, in memory, each window's first `positions` (default
        all Lp: a server at real lengths asks for its batch's widest window, and nothing past it is read or decoded);
        each segment read is first checked against its sha256."""
        positions = self._positions(positions)
        return self._read(rows, self.info["identity"]["hidden_size"],
                          lambda index, local: self._states(index, local, positions), positions)

    @property
    def graph_product(self):
        """(decoder [K, H], mean) of a cache whose codec leaves its decode's product to upper's graph (pq with a
        transform: exporters/codec_upper.py, passage_coefficients giving that graph's input), else None."""
        return None if self.codec is None else self.codec.graph_product()

    def passage_coefficients(self, rows, positions: int = None) -> np.ndarray:
        """[B, positions, K] float32 of these global rows: the look-ups of their decode, its product left to upper's
        graph (graph_product), for each window's first `positions` (default all Lp: a server at real lengths asks for
        its batch's longest window only, and nothing past it is looked up); the padding zero."""
        product = self.graph_product
        if product is None:
            raise PassageCacheError(f"passage cache {self.directory} stores {self.info['dtype']} without a product "
                                    "to leave to a graph", "read its states with passage_hidden()")
        positions = self._positions(positions)
        return self._read(rows, product[0].shape[0],
                          lambda index, local: self._coefficients(index, local, positions), positions)

    def _positions(self, positions) -> int:
        """A reader's `positions`: a whole number from 1 to Lp, None meaning Lp."""
        passage_len = self.info["identity"]["passage_len"]
        if positions is None:
            return passage_len
        if isinstance(positions, bool) or not isinstance(positions, (int, np.integer)) \
                or not 1 <= positions <= passage_len:
            raise PassageCacheError(f"positions must be a whole number from 1 to the cache's passage length "
                                    f"{passage_len}; got {positions!r}", "give the batch's widest window")
        return int(positions)

    def _states(self, index: int, local: np.ndarray, positions: int) -> np.ndarray:
        if self.codec is not None:  # decoded here, for the windows and positions asked for only
            return self.codec.decode(self._codes(index, local, positions), self._lengths(index, local, positions))
        scale = self.array(index, "passage_scale") if "passage_scale" in self.segments[index].shapes else None
        return decode(gather_rows(self.array(index, "passage_hidden")[:, :positions], local),
                      None if scale is None else gather_rows(scale[:, :positions], local))

    def _coefficients(self, index: int, local: np.ndarray, positions: int) -> np.ndarray:
        return self.codec.coefficients(self._codes(index, local, positions), self._lengths(index, local, positions))

    def _lengths(self, index: int, local: np.ndarray, positions: int) -> np.ndarray:
        """[B]: these local rows' window lengths (a codec's cache stores them), at most `positions`."""
        return np.minimum(gather_rows(self.array(index, "passage_length"), local), positions)

    def _codes(self, index: int, local: np.ndarray, positions: int = None) -> dict:
        """{name: [B, positions, ...]}: the codes of these local rows, their first `positions` (default all)."""
        return {name: gather_rows(self.array(index, f"passage_{name}")[:, :positions], local)
                for name in self.codec.CODES}

    def _read(self, rows, width: int, read_segment, positions: int) -> np.ndarray:
        """[B, positions, width] float32 of these global rows: read_segment(segment index, its local
        rows) for each segment they fall in, each segment first checked against its sha256."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.windows):
            raise PassageCacheError(f"passage cache {self.directory} has rows 0..{self.windows - 1}; asked for "
                                    f"{rows.min()}..{rows.max()} (-1: a window lookup() did not find)",
                                    "look windows up with rows(), which refuses missing ones")
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        segments = np.unique(which)
        if len(segments) == 1:  # a served question's window(s): read straight into the result, no second copy
            index = int(segments[0])
            if not self.segments[index].verified:
                self.segments[index].verify()
            return np.asarray(read_segment(index, rows - self.offsets[index]), dtype=np.float32)
        out = np.empty((len(rows), positions, width), dtype=np.float32)
        for index in segments:
            segment, picked = self.segments[index], np.flatnonzero(which == index)
            if not segment.verified:
                segment.verify()
            out[picked] = read_segment(index, rows[picked] - self.offsets[index])
        return out

    def verify(self) -> None:
        """Every listed segment's sha256, and no segment folder that no entry lists (its windows would be missing
        from the cache, and from the record's count, without a word)."""
        check_listing(self.directory, self.info)
        for segment in self.segments:
            segment.verify()


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
