"""pq: product quantization (faiss), `m` bytes a token; the sub-vectors cut from the states as they are, after
faiss's OPQ rotation, or from learned coefficients (pca, fisher) in unequal sizes."""

import numpy as np

from ...runtime.codec_decode import code_runs, product_tables
from .base import Codec, CodecError, check_sample_size, is_number, is_whole


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
        check_sample_size(sample, 256, f"pq m={m}")
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
        for size, count in code_runs(sizes):
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
            self._decode_tables = product_tables(codebook)
        return self._decode_tables

    def _quantizers(self, faiss, codebook: dict) -> list:
        """One faiss ProductQuantizer per run of equal sub-vectors of two dimensions or more (None for the
        one-dimensional runs, coded by _nearest_scalar), its centroids the codebook's, made once. Each keeps its
        centroids transposed too (sync_transposed_centroids): faiss's per-vector search then runs a SIMD kernel for
        every sub-vector size, not only its few specialised ones (a fisher m=92 encode took ~1.3x less CPU, profiled
        on contended cores; faiss's search 1.2-1.9x faster for sub-vectors of 3 to 27 dimensions)."""
        if getattr(self, "_encode_quantizers", None) is None:
            quantizers = []
            for _, _, tables in self._tables(codebook):
                count, _, size = tables.shape
                if size == 1:
                    quantizers.append(None)
                    continue
                quantizer = faiss.ProductQuantizer(size * count, count, 8)
                faiss.copy_array_to_vector(np.ascontiguousarray(tables).ravel(), quantizer.centroids)
                quantizer.sync_transposed_centroids()
                quantizers.append(quantizer)
            self._encode_quantizers = quantizers
        return self._encode_quantizers

    def _encode(self, faiss, codebook: dict, tokens: np.ndarray) -> dict:
        coefficients = self._coefficients(codebook, tokens).astype(np.float32, copy=False)
        codes = []
        for (_, column, tables), quantizer in zip(self._tables(codebook), self._quantizers(faiss, codebook)):
            count, _, size = tables.shape
            block = np.ascontiguousarray(coefficients[:, column:column + size * count])
            if quantizer is None:  # faiss codes one-dimensional sub-vectors ~15x slower than two-dimensional ones
                codes.append(_nearest_scalar(tables[:, :, 0], block))
                continue
            codes.append(quantizer.compute_codes(block))
        return {"codes": np.concatenate(codes, axis=1)}

    def arrays(self) -> dict:
        return {"codes": ((self.settings["m"],), np.dtype(np.uint8))}
