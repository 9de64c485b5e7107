"""What the learned codecs share: the Codec interface (train, encode, decode, bytes a token: the window handling and
the checks, each codec adding its own _train, _encode and arrays), their settings (parsed, checked and
described alike) and faiss found or refused. Decoding is runtime/codec_decode.py's (numpy only, so that a measured
machine's runner runs the same code): Codec.decode asks it for this codec's decoder, and the codecs' encoders read its
look-up tables and packing."""

import contextlib

import numpy as np

from ...contracts.errors import PassageCacheError
from ...runtime.codec_decode import graph_product, make_decoder, one_blas_thread

FAISS_EXTRA = "pip install deformer-bench[codecs]"
KEY_BYTES_PER_WINDOW = 16  # key_index.KEY_BYTES: a window's key
LENGTH_BYTES_PER_WINDOW = 2  # the attention mask stored as the window's length (uint16)
# k-means needs a few dozen points per centroid to place it (faiss warns below 39); fewer leave centroids
# that describe a handful of tokens each, and the codes learned from them do not carry to other passages.
MIN_POINTS_PER_CENTROID = 39


class CodecError(PassageCacheError):
    """A codec cannot be learned or used: faiss missing, a sample too small, settings that do not fit."""


def require_faiss():
    """faiss, or a CodecError naming the extra that installs it."""
    try:
        import faiss
    except ImportError:
        raise CodecError("learned passage-state codecs (pq, rq, binary) train and encode with faiss, which is not "
                         "installed", FAISS_EXTRA) from None
    return faiss


def _float32_rows(sample, hidden_size: int) -> np.ndarray:
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if sample.ndim != 2 or sample.shape[1] != hidden_size:
        raise CodecError(f"a codec of hidden size {hidden_size} learns from [N, {hidden_size}] token states; "
                         f"got shape {sample.shape}", "give the valid tokens' states, one row a token")
    if not np.isfinite(sample).all():
        raise CodecError("the training sample holds states that are not finite (NaN or infinity)",
                         "check the graph set (deformer-export validates it)")
    return sample


def check_sample_size(sample: np.ndarray, centroids: int, what: str) -> None:
    needed = centroids * MIN_POINTS_PER_CENTROID
    if len(sample) < needed:
        raise CodecError(f"{what} needs at least {needed:,} token states to learn {centroids:,} centroids "
                         f"({MIN_POINTS_PER_CENTROID} a centroid); the training sample has {len(sample):,}",
                         "train on more passages, or choose a codec with fewer centroids")


def is_whole(value) -> bool:
    """A setting that is a whole number: an int, not a bool (parse_settings reads `true` as True, which Python
    counts as the int 1: m=true would be m=1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A setting that is a finite real number (not a bool, not text such as "abc" or "nan")."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def parse_settings(text: str) -> dict:
    """"m=96,transform=opq,alpha=0.1" -> {"m": 96, "transform": "opq", "alpha": 0.1}: whole numbers as int, other
    numbers as float, true/false as booleans, null as None, anything else as text."""
    settings = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not key or not equals:
            raise CodecError(f"codec setting {item!r} is not KEY=VALUE", "e.g. m=96,transform=opq")
        if key in settings:
            raise CodecError(f"codec setting {key} is given twice", "give each setting once")
        lowered = value.lower()
        if lowered in ("true", "false"):
            settings[key] = lowered == "true"
        elif lowered in ("null", "none"):
            settings[key] = None
        else:
            try:
                settings[key] = int(value)
            except ValueError:
                try:
                    number = float(value)
                    settings[key] = number if np.isfinite(number) else value
                except ValueError:
                    settings[key] = value
    return settings


def describe_codec(name: str, settings: dict) -> str:
    """"pq m=96 transform=none alpha=0.1": a codec's name and settings, as messages name it (a codec's own, or one
    a cache's record describes)."""
    return " ".join([name, *(f"{key}={value}" for key, value in settings.items())])


class Codec:
    """A learned codec: `settings` (JSON scalars) and `codebook` (numpy arrays) are its whole state."""

    name = None
    CODES = ()  # the names of the arrays encode() returns
    SETTINGS = {}  # setting -> default

    def __init__(self, hidden_size: int, codebook: dict = None, **settings):
        unknown = set(settings) - set(self.SETTINGS)
        if unknown:
            raise CodecError(f"codec {self.name} has no setting {', '.join(sorted(unknown))}",
                             f"its settings: {', '.join(self.SETTINGS)}")
        self.hidden_size = int(hidden_size)
        self.settings = {**self.SETTINGS, **settings}
        self.check_settings()
        self.codebook = None if codebook is None else {key: np.asarray(value) for key, value in codebook.items()}

    def check_settings(self) -> None:
        pass

    @property
    def uses_metric(self) -> bool:
        """Whether training weighs errors by a metric [H, H] (pq transform=fisher only)."""
        return False

    def check_metric(self, metric) -> np.ndarray:
        """The metric as float64 [H, H] for a codec that uses one (refused unless a finite real matrix of that shape
        with a positive trace, as a Fisher information is), or None for one that does not (a metric given to it is
        refused: it would change nothing)."""
        if not self.uses_metric:
            if metric is not None:
                raise CodecError(f"codec {self.describe()} learns without a metric: only pq transform=fisher weighs "
                                 "its errors by one", "drop the metric, or use pq with transform=fisher")
            return None
        size = self.hidden_size
        if metric is None:
            raise CodecError(f"{self.describe()} learns from the upper layers' sensitivity (a metric [{size}, "
                             f"{size}])", "give the metric (sensitivity.fisher_metric) or use transform pca")
        metric = np.asarray(metric)
        if metric.dtype.kind not in "iuf" or metric.shape != (size, size):
            raise CodecError(f"{self.describe()}: the metric must be a [{size}, {size}] matrix of real numbers; got "
                             f"shape {metric.shape}, {metric.dtype}", "give the graph set's metric (fisher.npy)")
        metric = metric.astype(np.float64)
        if not np.isfinite(metric).all() or not np.trace(metric) > 0:
            raise CodecError(f"{self.describe()}: the metric must be finite with a positive trace (a Fisher "
                             "information is positive semi-definite)", "give the graph set's metric (fisher.npy)")
        return metric

    def describe(self) -> str:
        return describe_codec(self.name, self.settings)

    def _require_codebook(self) -> dict:
        if self.codebook is None:
            raise CodecError(f"codec {self.describe()} has no codebook", "train it on a sample first")
        return self.codebook

    def train(self, sample: np.ndarray, metric=None, seed: int = 0) -> dict:
        """Learn the codebook from token states [N, H] (`metric` [H, H]: the upper layers' sensitivity, for the
        codecs that weigh errors by it); returns it (also kept in `codebook`)."""
        faiss = require_faiss()
        self.codebook = self._train(faiss, _float32_rows(sample, self.hidden_size), seed, metric)
        return self.codebook

    def encode(self, states: np.ndarray, lengths=None) -> dict:
        """{array name: [n, Lp, ...]} codes of float32 windows [n, Lp, H] (row-aligned, like a segment's arrays).
        `lengths` [n]: each window's valid tokens; the padding past them is not encoded (its codes are zeros):
        padding states are masked as keys and never an answer, so no answer depends on them."""
        faiss = require_faiss()
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 3 or states.shape[2] != self.hidden_size:
            raise CodecError(f"codec of hidden size {self.hidden_size} encodes [n, Lp, {self.hidden_size}] "
                             f"windows; got shape {states.shape}", "give lower_passage's passage_hidden")
        if not np.isfinite(states).all():
            raise CodecError("passage states that are not finite (NaN or infinity) cannot be encoded",
                             "check the graph set (deformer-export validates it)")
        codebook = self._require_codebook()
        n, length, _ = states.shape
        rows = self._valid_rows(lengths, n, length)
        tokens = states.reshape(n * length, self.hidden_size)[rows]
        # numpy's and faiss's BLAS keep the process's threads here (unlike decode): a build encodes a shard's states
        # after lower_passage has run over all of them, so the cores are the encode's; held to one thread, a pq
        # fisher m=92 encode took 2.2x as long on 2 cores (results/passage-cache/codecs, "A build's throughput").
        codes = self._encode(faiss, codebook, np.ascontiguousarray(tokens))
        out = {}
        for key, value in codes.items():
            out[key] = np.zeros((n * length,) + value.shape[1:], dtype=value.dtype)
            out[key][rows] = value
            out[key] = out[key].reshape((n, length) + value.shape[1:])
        return out

    def decode(self, codes: dict, lengths=None) -> np.ndarray:
        """float32 [n, Lp, H] of encode()'s arrays (or rows gathered from them); with `lengths` [n], the padding
        past each window's length is left zero, not decoded (see encode)."""
        return self._windows(codes, lengths, lambda decoder, valid: decoder.decode(valid), products=True)

    def graph_product(self):
        """(decoder [K, H], mean [H] or None): the product that upper's graph can compute in place of decode()'s
        (pq with a transform: exporters/codec_upper.py), coefficients() giving its input; None for the others."""
        return graph_product(self._decoder(self._require_codebook()))

    def coefficients(self, codes: dict, lengths=None) -> np.ndarray:
        """float32 [n, Lp, K]: decode()'s look-ups alone (a codec with a graph_product), the padding zero."""
        if self.graph_product() is None:
            raise CodecError(f"{self.describe()} has no product to leave to a graph", "decode() its codes")
        return self._windows(codes, lengths, lambda decoder, valid: decoder.coefficients(valid), products=False)

    def _windows(self, codes: dict, lengths, decode_tokens, products: bool) -> np.ndarray:
        """[n, L, width] of the windows' codes [n, L, ...] (L: Lp, or the positions a reader asked for):
        decode_tokens(decoder, {array: [T, ...]}) of the valid tokens, the padding zero; numpy's BLAS held to one
        thread where decode_tokens runs `products` (see one_blas_thread)."""
        decoder = self._decoder(self._require_codebook())
        first = next(iter(codes.values()))
        n, length = first.shape[:2]
        rows = self._valid_rows(lengths, n, length)
        flat = {key: value.reshape((n * length,) + value.shape[2:]) for key, value in codes.items()}
        if len(rows) < n * length:  # the valid tokens only (all valid: one window read at its own length, say)
            flat = {key: value[rows] for key, value in flat.items()}
        with one_blas_thread() if products else contextlib.nullcontext():
            tokens = decode_tokens(decoder, flat)
        if len(rows) == n * length:
            return tokens.reshape(n, length, tokens.shape[-1])
        # the valid rows are each window's first `lengths[i]` positions, in order: copied window by window (slices,
        # not a scatter over every row: this runs in a served question)
        out = np.zeros((n, length, tokens.shape[-1]), dtype=np.float32)
        start = 0
        for window, count in enumerate(np.asarray(lengths).reshape(-1).tolist()):
            out[window, :count] = tokens[start:start + count]
            start += count
        return out

    @staticmethod
    def _valid_rows(lengths, n: int, length: int) -> np.ndarray:
        """Flat indices (window * Lp + position) of the tokens to code: all, or those before each length."""
        if lengths is None:
            return np.arange(n * length)
        lengths = np.asarray(lengths).reshape(-1)
        if lengths.shape != (n,) or lengths.min(initial=0) < 0 or lengths.max(initial=0) > length:
            raise CodecError(f"lengths must be {n} values from 0 to {length} (one a window)",
                             "give each window's number of valid tokens")
        return np.flatnonzero(np.arange(length)[None, :] < lengths[:, None])

    def _decoder(self, codebook: dict):
        """runtime.codec_decode's decoder of this codec (the one a measured machine runs), made once per codebook."""
        made = getattr(self, "_made_decoder", None)
        if made is None or made[0] is not codebook:
            self._made_decoder = made = (codebook, make_decoder(self.name, self.settings, codebook))
        return made[1]

    def code_bytes_per_token(self) -> float:
        """Bytes of one token's codes and scales, as encode() stores them."""
        return float(sum(int(np.prod(tail)) * np.dtype(dtype).itemsize for tail, dtype in self.arrays().values()))

    def arrays(self) -> dict:
        """{name: (shape per token, numpy dtype)} of what encode() returns: a cache stores each as a segment file
        passage_NAME.npy of shape [windows, Lp, *shape]."""
        raise NotImplementedError

    def bytes_per_token(self, passage_len: int, id_bytes: int = 2) -> float:
        """All included, per stored token: codes and scales, the token's id, and a window's key and length
        spread over its `passage_len` tokens (the codebook, once per cache, is not counted)."""
        return (self.code_bytes_per_token() + id_bytes
                + (KEY_BYTES_PER_WINDOW + LENGTH_BYTES_PER_WINDOW) / passage_len)

    def codebook_bytes(self) -> int:
        return int(sum(array.nbytes for array in self._require_codebook().values()))


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """[T, H] codes below 2 ** bits -> [T, H * bits / 8] uint8, 8 / bits dimensions a byte, lowest bits first."""
    per_byte = 8 // bits
    grouped = codes.astype(np.uint8).reshape(len(codes), -1, per_byte)
    shifts = (bits * np.arange(per_byte)).astype(np.uint8)
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)
