"""A passage cache's files one by one (the layout store.py describes): what a segment holds (each array's shape and
type, for the cache's dtype or learned codec), each .npy's header checked against it and the array opened (damage
and a limit of this system told apart), a segment's checksums, and the codebook a learned codec decodes with,
checked against its sha256.
"""

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contracts.errors import PassageCacheError
from ..contracts.hashing import file_sha256
from .codecs import STORED
from .key_index import KEY_BYTES
from .quantizers import CodecError, make_codec
from .schema import CODEBOOK_FOLDER, LEARNED_DTYPES, REBUILD


def id_dtype(vocab_size: int):
    """The narrowest integer type of stored token ids."""
    return np.uint16 if vocab_size <= 2**16 else np.int32


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


def check_header(path: Path, shape: tuple, dtype) -> None:
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


def open_array(path: Path, shape: tuple, dtype, mmap: bool = True) -> np.ndarray:
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
