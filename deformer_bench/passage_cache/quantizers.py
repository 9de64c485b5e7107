"""Learned codecs of passage states (issue 25): a few bytes a token instead of 4 a dimension.

Each codec learns a codebook from a sample of the graph set's own passage states ([N, H] float32, the valid
tokens of some windows), encodes windows [n, Lp, H] into small integer codes (and float16 scales where it has
them) and decodes them back to float32 [n, Lp, H], the only dtype the upper graph takes.

    pq      product quantization (faiss): the H dimensions cut into `m` sub-vectors, each stored as one byte,
            the id of its nearest of 256 sub-centroids; `opq` adds faiss's learned rotation before the cut
            (decode then costs one [Lp, H] x [H, H] product).
    rq      ColBERTv2's residual codes: the id of the token's nearest of `centroids` coarse centroids (uint16,
            faiss k-means) and its residual to it in `bits` (1, 2 or 4) bits a dimension, cut at the residual's
            quantiles per dimension and decoded to each bucket's mean.
    binary  one bit a dimension, the sign around the per-dimension mean, times a float16 scale per token and
            group of `group` dimensions (the mean |x - mean| of the group: the scale that minimizes the squared
            error of sign codes); the two levels of each dimension are refit on the sample (a per-dimension
            linear correction of the decoded value, least squares).

Training and encoding need faiss (the optional extra `pip install deformer-bench[codecs]`); decoding is numpy
only, so a reader of a cache never needs it. Every decode is table look-ups: a code byte selects a short
float32 vector from a table learned at training (tens of microseconds a 224-token window); pq's transforms add one
product back to the states' coordinates (~1 ms a window for fisher at m=92), run on one BLAS thread. A codec's whole state is `codebook`, a dict of plain numpy arrays
(saved as .npy files beside the segments, checksummed like them), and `settings`, a dict of JSON scalars.
"""

import numpy as np
from threadpoolctl import ThreadpoolController

from ..contracts.errors import PassageCacheError

FAISS_EXTRA = "pip install deformer-bench[codecs]"
KEY_BYTES_PER_WINDOW = 16  # store.KEY_BYTES: a window's key
LENGTH_BYTES_PER_WINDOW = 2  # the attention mask stored as the window's length (uint16)
SCALE_DTYPE = np.float16
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


def _check_sample_size(sample: np.ndarray, centroids: int, what: str) -> None:
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


def _kmeans(faiss, points: np.ndarray, centroids: int, seed: int) -> np.ndarray:
    kmeans = faiss.Kmeans(points.shape[1], centroids, niter=20, seed=seed, max_points_per_centroid=256)
    kmeans.train(np.ascontiguousarray(points, dtype=np.float32))
    return kmeans.centroids.astype(np.float32)


def _nearest(faiss, centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    return index.search(np.ascontiguousarray(points, dtype=np.float32), 1)[1][:, 0]


_BLAS_CONTROLLER = None  # threadpoolctl's view of the BLAS libraries loaded, found once (it scans the process)


def one_blas_thread():
    """A context in which numpy's BLAS (and faiss's) runs on one thread: a codec's products (pq's transform, about
    [tokens, K] x [K, H]) run between onnxruntime's graph runs, and OpenBLAS's threads spin for a while after a
    product, taking the cores from the graph that follows. Served from a pq m=92 fisher cache at batch 1, a
    question's mean latency rose 9% over the float32 cache's with one BLAS thread and 53% with numpy's default
    two (results/passage-cache/codecs, "In the served path")."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


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
        with one_blas_thread():
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
        codebook = self._require_codebook()
        first = next(iter(codes.values()))
        n, length = first.shape[:2]
        rows = self._valid_rows(lengths, n, length)
        with one_blas_thread():
            tokens = self._decode(codebook, {key: value.reshape((n * length,) + value.shape[2:])[rows]
                                             for key, value in codes.items()})
        if len(rows) == n * length:
            return tokens.reshape(n, length, self.hidden_size)
        out = np.zeros((n * length, self.hidden_size), dtype=np.float32)
        out[rows] = tokens
        return out.reshape(n, length, self.hidden_size)

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


def _table_decode(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[T, table_width * groups]: row t is tables[g, codes[t, g]] for each group g, concatenated (tables
    [groups, 256, width], codes [T, groups] uint8). One flat take: numpy's fastest gather."""
    groups, entries, width = tables.shape
    flat = codes.astype(np.intp) + np.arange(groups, dtype=np.intp) * entries
    return np.take(tables.reshape(groups * entries, width), flat, axis=0).reshape(len(codes), groups * width)


def _water_filled_groups(variances: np.ndarray, groups: int, max_size: int = 32) -> list:
    """Sizes of `groups` sub-vectors over the leading coefficients (variances sorted, largest first), one byte
    each: reverse water-filling gives coefficient i max(0, log2(variance_i / level) / 2) bits for the level that
    spends them, and a sub-vector starting at i takes about 8 / bits_i coefficients (a coefficient worth 8 bits
    or more gets a byte of its own; those below the level get none: decoded as their mean, zero)."""

    def sizes_at(level: float) -> list:
        bits = np.maximum(0.0, 0.5 * np.log2(np.maximum(variances, 1e-30) / level))
        sizes, start = [], 0
        while start < len(variances) and bits[start] > 0 and len(sizes) <= groups:
            size = int(np.clip(round(8 / bits[start]), 1, max_size))
            sizes.append(min(size, len(variances) - start))
            start += sizes[-1]
        return sizes

    low, high = float(variances[variances > 0].min()) * 1e-6, float(variances.max())
    for _ in range(100):  # the lowest level that needs no more than `groups` sub-vectors
        level = np.sqrt(low * high)
        low, high = (level, high) if len(sizes_at(level)) > groups else (low, level)
    sizes = sizes_at(high)
    while len(sizes) < groups and sum(sizes) < len(variances):  # rounding left bytes over: cover more
        sizes.append(min(sizes[-1], len(variances) - sum(sizes)))
    return sizes[:groups]


def _runs(sizes) -> list:
    """[(size, count)]: consecutive sub-vectors of one size, each learned as one faiss ProductQuantizer."""
    runs = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return [tuple(run) for run in runs]


def _nearest_scalar(levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[T, count] uint8: per column j, the index of the level of levels[j] ([count, 256]) nearest each value
    (the nearest of sorted levels is found among the midpoints between them)."""
    order = np.argsort(levels, axis=1)
    ordered = np.take_along_axis(levels, order, axis=1)
    midpoints = (ordered[:, 1:] + ordered[:, :-1]) / 2
    return np.stack([order[j][np.searchsorted(midpoints[j], values[:, j])] for j in range(len(levels))],
                    axis=1).astype(np.uint8)


class ProductQuantizer(Codec):
    """`m` bytes a token, each the id of one of 256 sub-centroids of a sub-vector (faiss.ProductQuantizer).

    transform "none": the H dimensions cut into m equal sub-vectors as they are. "opq": faiss's OPQ rotation
    first. "pca" and "fisher": a learned linear transform to decorrelated coefficients, sorted by how much
    they matter, and sub-vectors of unequal sizes (_water_filled_groups): the coefficients that matter most get
    a byte each, the least none. "pca" ranks them by variance (squared error); "fisher" by the error the upper
    layers feel: the metric (1 - alpha) F / tr F + alpha I / H, F the Fisher information of the answer with
    respect to the passage states (sensitivity.py; given to train as `metric`), alpha keeping every direction
    some weight. Decoding these costs one [tokens, K] x [K, H] product (K the coefficients coded) after the
    look-ups."""

    name = "pq"
    CODES = ("codes",)  # the arrays encode() returns (arrays())
    SETTINGS = {"m": 96, "transform": "none", "alpha": 0.1}
    TRANSFORMS = ("none", "opq", "pca", "fisher")

    @property
    def uses_metric(self) -> bool:
        return self.settings["transform"] == "fisher"

    def check_settings(self) -> None:
        m, transform = self.settings["m"], self.settings["transform"]
        if not isinstance(transform, str) or transform not in self.TRANSFORMS:
            raise CodecError(f"pq transform={transform!r} is unknown", f"choose one of {', '.join(self.TRANSFORMS)}")
        if not (is_whole(m) and 0 < m <= self.hidden_size):
            raise CodecError(f"pq m={m}: between 1 and {self.hidden_size} bytes a token", "give another m")
        if transform in ("none", "opq") and self.hidden_size % m:
            raise CodecError(f"pq m={m}: the {self.hidden_size} dimensions must split into m equal sub-vectors "
                             f"(transform {transform})", f"give an m that divides {self.hidden_size}, or transform "
                             "pca or fisher (unequal sub-vectors)")
        alpha = self.settings["alpha"]
        if not (is_number(alpha) and 0 < alpha <= 1):
            raise CodecError(f"pq alpha={self.settings['alpha']}: between 0 (excluded) and 1",
                             "give an alpha such as 0.1")

    def _basis(self, sample: np.ndarray, metric) -> tuple:
        """(mean [H], encoder [H, H], decoder [H, H], variances [H]): coefficients (x - mean) @ encoder, sorted by
        variance in the chosen metric; x = coefficients @ decoder + mean."""
        mean = sample.mean(axis=0, dtype=np.float64)
        covariance = np.cov(sample.T.astype(np.float64))
        if self.settings["transform"] == "pca":
            root, inverse_root = np.eye(self.hidden_size), np.eye(self.hidden_size)
        else:
            metric = self.check_metric(metric)
            alpha = float(self.settings["alpha"])
            blended = (1 - alpha) * metric / np.trace(metric) + alpha * np.eye(self.hidden_size) / self.hidden_size
            values, vectors = np.linalg.eigh((blended + blended.T) / 2)
            values = np.maximum(values, alpha / self.hidden_size)  # positive: alpha's share is always there
            root = (vectors * np.sqrt(values)) @ vectors.T
            inverse_root = (vectors / np.sqrt(values)) @ vectors.T
        variances, rotation = np.linalg.eigh(root @ covariance @ root)
        order = np.argsort(variances)[::-1]
        variances, rotation = variances[order], rotation[:, order]
        return mean, root @ rotation, rotation.T @ inverse_root, variances

    def _train(self, faiss, sample: np.ndarray, seed: int, metric=None) -> dict:
        m, transform = self.settings["m"], self.settings["transform"]
        _check_sample_size(sample, 256, f"pq m={m}")
        codebook = {}
        if transform == "opq":
            rotation = faiss.OPQMatrix(self.hidden_size, m)
            rotation.train(sample)
            codebook["encoder"] = faiss.vector_to_array(rotation.A).reshape(self.hidden_size, self.hidden_size).T
            codebook["decoder"] = codebook["encoder"].T  # a rotation: its inverse is its transpose
            sizes = [self.hidden_size // m] * m
        elif transform in ("pca", "fisher"):
            mean, encoder, decoder, variances = self._basis(sample, metric)
            sizes = _water_filled_groups(variances, m)
            covered = sum(sizes)
            codebook.update(mean=mean, encoder=encoder[:, :covered], decoder=decoder[:covered])
        else:
            sizes = [self.hidden_size // m] * m
        coefficients = self._coefficients(codebook, sample)
        centroids, start = [], 0
        for size, count in _runs(sizes):
            quantizer = faiss.ProductQuantizer(size * count, count, 8)
            quantizer.cp.seed = seed
            quantizer.train(np.ascontiguousarray(coefficients[:, start:start + size * count]))
            centroids.append(faiss.vector_to_array(quantizer.centroids))
            start += size * count
        codebook.update(centroids=np.concatenate(centroids), sizes=np.asarray(sizes, dtype=np.int32))
        return {key: value.astype(np.int32 if key == "sizes" else np.float32) for key, value in codebook.items()}

    @staticmethod
    def _coefficients(codebook: dict, tokens: np.ndarray) -> np.ndarray:
        if "encoder" not in codebook:
            return tokens
        return (tokens - codebook.get("mean", 0)) @ codebook["encoder"]

    def _tables(self, codebook: dict) -> list:
        """[(first code, first coefficient, tables [count, 256, size])] per run of equal sub-vectors."""
        if getattr(self, "_decode_tables", None) is None:
            tables, offset, code, column = [], 0, 0, 0
            for size, count in _runs(codebook["sizes"].tolist()):
                width = count * 256 * size
                tables.append((code, column, codebook["centroids"][offset:offset + width].reshape(count, 256, size)))
                offset, code, column = offset + width, code + count, column + size * count
            self._decode_tables = tables
        return self._decode_tables

    def _encode(self, faiss, codebook: dict, tokens: np.ndarray) -> dict:
        coefficients = self._coefficients(codebook, tokens).astype(np.float32)
        codes = []
        for _, column, tables in self._tables(codebook):
            count, _, size = tables.shape
            block = np.ascontiguousarray(coefficients[:, column:column + size * count])
            if size == 1:  # faiss codes one-dimensional sub-vectors ~15x slower than two-dimensional ones
                codes.append(_nearest_scalar(tables[:, :, 0], block))
                continue
            quantizer = faiss.ProductQuantizer(size * count, count, 8)
            faiss.copy_array_to_vector(tables.ravel(), quantizer.centroids)
            codes.append(quantizer.compute_codes(block))
        return {"codes": np.concatenate(codes, axis=1)}

    def _decode(self, codebook: dict, codes: dict) -> np.ndarray:
        tables = self._tables(codebook)
        parts = [_table_decode(table, codes["codes"][:, code:code + len(table)]) for code, _, table in tables]
        coefficients = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if "decoder" not in codebook:
            return coefficients
        tokens = coefficients @ codebook["decoder"]
        if "mean" in codebook:
            tokens += codebook["mean"]
        return tokens

    def arrays(self) -> dict:
        return {"codes": ((self.settings["m"],), np.dtype(np.uint8))}


def _bucket_tables(levels: np.ndarray, bits: int) -> np.ndarray:
    """Decode tables of `bits`-bit codes packed 8 / bits dimensions a byte (lowest bits first): [H * bits / 8,
    256, 8 / bits] float32, entry [j, byte] = the levels of the byte's dimensions (levels [H, 2 ** bits])."""
    per_byte = 8 // bits
    hidden = levels.shape[0]
    byte = np.arange(256)
    codes = (byte[:, None] >> (bits * np.arange(per_byte))[None, :]) & ((1 << bits) - 1)  # [256, per_byte]
    grouped = levels.reshape(hidden // per_byte, per_byte, 1 << bits)  # [bytes, per_byte, levels]
    return np.take_along_axis(grouped[:, None, :, :], codes[None, :, :, None], axis=3)[..., 0].astype(np.float32)


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """[T, H] codes below 2 ** bits -> [T, H * bits / 8] uint8, 8 / bits dimensions a byte, lowest bits first."""
    per_byte = 8 // bits
    grouped = codes.astype(np.uint8).reshape(len(codes), -1, per_byte)
    shifts = (bits * np.arange(per_byte)).astype(np.uint8)
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)


def _quantile_buckets(values: np.ndarray, bits: int) -> tuple:
    """Per dimension, `2 ** bits` buckets cut at the values' quantiles: (cutoffs [H, 2**bits - 1], levels
    [H, 2**bits], each bucket's mean: the level that minimizes its squared error)."""
    count = 1 << bits
    cutoffs = np.quantile(values, np.arange(1, count) / count, axis=0).T.astype(np.float32)  # [H, count - 1]
    codes = _bucketize(values, cutoffs)
    levels = np.empty((values.shape[1], count), dtype=np.float32)
    for level in range(count):
        inside = codes == level
        total, members = (values * inside).sum(axis=0), inside.sum(axis=0)
        # an empty bucket (a dimension with repeated values): its cutoff's value, never read back anyway
        fallback = cutoffs[:, min(level, count - 2)]
        levels[:, level] = np.where(members > 0, total / np.maximum(members, 1), fallback)
    return cutoffs, levels


def _bucketize(values: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """[T, H] bucket index of each value: how many of its dimension's cutoffs it exceeds."""
    codes = np.zeros(values.shape, dtype=np.uint8)
    for cut in range(cutoffs.shape[1]):
        codes += values > cutoffs[:, cut]
    return codes


class ResidualCodes(Codec):
    """ColBERTv2: a coarse centroid id (uint16) and the residual in `bits` bits a dimension."""

    name = "rq"
    CODES = ("centroid", "residual")  # the arrays encode() returns (arrays())
    SETTINGS = {"centroids": 1024, "bits": 2}

    def check_settings(self) -> None:
        centroids, bits = self.settings["centroids"], self.settings["bits"]
        if not (is_whole(bits) and bits in (1, 2, 4)):
            raise CodecError(f"rq bits={bits}: the residual takes 1, 2 or 4 bits a dimension", "give bits 1, 2 or 4")
        if not (is_whole(centroids) and 1 <= centroids <= 2**16):
            raise CodecError(f"rq centroids={centroids}: a centroid id is stored as uint16",
                             "give 1 to 65536 centroids")
        if (self.hidden_size * bits) % 8:
            raise CodecError(f"rq bits={bits}: {self.hidden_size} dimensions do not pack into whole bytes",
                             "give bits 2 or 4, or a hidden size that is a multiple of 8")

    def _train(self, faiss, sample: np.ndarray, seed: int, metric=None) -> dict:
        _check_sample_size(sample, self.settings["centroids"], f"rq centroids={self.settings['centroids']}")
        centroids = _kmeans(faiss, sample, self.settings["centroids"], seed)
        residuals = sample - centroids[_nearest(faiss, centroids, sample)]
        cutoffs, levels = _quantile_buckets(residuals, self.settings["bits"])
        return {"centroids": centroids, "cutoffs": cutoffs, "levels": levels}

    def _encode(self, faiss, codebook: dict, tokens: np.ndarray) -> dict:
        ids = _nearest(faiss, codebook["centroids"], tokens)
        residuals = _bucketize(tokens - codebook["centroids"][ids], codebook["cutoffs"])
        return {"centroid": ids.astype(np.uint16), "residual": _pack(residuals, self.settings["bits"])}

    def _decode(self, codebook: dict, codes: dict) -> np.ndarray:
        if getattr(self, "_tables", None) is None:
            self._tables = _bucket_tables(codebook["levels"], self.settings["bits"])
        tokens = _table_decode(self._tables, codes["residual"])
        tokens += np.take(codebook["centroids"], codes["centroid"].astype(np.intp), axis=0)
        return tokens

    def arrays(self) -> dict:
        return {"centroid": ((), np.dtype(np.uint16)),
                "residual": ((self.hidden_size * self.settings["bits"] // 8,), np.dtype(np.uint8))}


class BinaryCodes(Codec):
    """The sign of each dimension around its mean, and one float16 scale per token and `group` dimensions.
    With `refit`, each dimension's two decoded levels are fit to the sample (least squares) instead of +-1."""

    name = "binary"
    CODES = ("signs", "scale")  # the arrays encode() returns (arrays())
    SETTINGS = {"group": None, "refit": True}  # group None: the whole token, one scale

    def check_settings(self) -> None:
        if self.settings["group"] is None:
            self.settings["group"] = self.hidden_size
        group = self.settings["group"]
        if self.hidden_size % 8:
            raise CodecError(f"binary: {self.hidden_size} dimensions do not pack into whole bytes",
                             "a hidden size that is a multiple of 8")
        if not (is_whole(group) and 0 < group <= self.hidden_size and self.hidden_size % group == 0):
            raise CodecError(f"binary group={group}: the {self.hidden_size} dimensions must split into equal groups",
                             f"give a group that divides {self.hidden_size}")
        if not isinstance(self.settings["refit"], bool):
            raise CodecError(f"binary refit={self.settings['refit']}: true or false", "give refit=true or refit=false")

    def _signs_and_scales(self, centered: np.ndarray) -> tuple:
        group = self.settings["group"]
        grouped = np.abs(centered).reshape(len(centered), -1, group)
        scales = grouped.mean(axis=2).astype(SCALE_DTYPE)  # [T, H / group]
        return centered > 0, scales

    def _train(self, faiss, sample: np.ndarray, seed: int, metric=None) -> dict:
        _check_sample_size(sample, 2, "binary")  # two levels a dimension
        mean = sample.mean(axis=0).astype(np.float32)
        centered = sample - mean
        positive, scales = self._signs_and_scales(centered)
        spread = np.repeat(scales.astype(np.float32), self.settings["group"], axis=1)  # [T, H]
        levels = np.stack([-np.ones_like(mean), np.ones_like(mean)], axis=1)  # [H, 2]: code 0 below, 1 above
        if self.settings["refit"]:
            for code, side in ((0, ~positive), (1, positive)):
                weight = (spread * spread * side).sum(axis=0)
                fitted = (centered * spread * side).sum(axis=0) / np.maximum(weight, 1e-12)
                levels[:, code] = np.where(weight > 0, fitted, levels[:, code])
        return {"mean": mean, "levels": levels.astype(np.float32)}

    def _encode(self, faiss, codebook: dict, tokens: np.ndarray) -> dict:
        positive, scales = self._signs_and_scales(tokens - codebook["mean"])
        return {"signs": _pack(positive, 1), "scale": scales}

    def _decode(self, codebook: dict, codes: dict) -> np.ndarray:
        if getattr(self, "_tables", None) is None:
            self._tables = _bucket_tables(codebook["levels"], 1)
        tokens = _table_decode(self._tables, codes["signs"])
        scales = codes["scale"].astype(np.float32)
        tokens = (tokens.reshape(len(tokens), scales.shape[1], -1) * scales[:, :, None]).reshape(tokens.shape)
        tokens += codebook["mean"]
        return tokens

    def arrays(self) -> dict:
        return {"signs": ((self.hidden_size // 8,), np.dtype(np.uint8)),
                "scale": ((self.hidden_size // self.settings["group"],), np.dtype(SCALE_DTYPE))}


CODECS = {codec.name: codec for codec in (ProductQuantizer, ResidualCodes, BinaryCodes)}


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


def make_codec(name: str, hidden_size: int, codebook: dict = None, **settings) -> Codec:
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}", f"choose one of {', '.join(CODECS)}")
    return CODECS[name](hidden_size, codebook, **settings)
