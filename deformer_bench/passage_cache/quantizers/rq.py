"""rq: ColBERTv2's residual codes, a coarse centroid id (uint16, faiss k-means) and the residual to it in 1, 2 or 4
bits a dimension, cut at its quantiles."""

import numpy as np

from .base import Codec, CodecError, check_sample_size, is_whole, pack_codes


def _kmeans(faiss, points: np.ndarray, centroids: int, seed: int) -> np.ndarray:
    kmeans = faiss.Kmeans(points.shape[1], centroids, niter=20, seed=seed, max_points_per_centroid=256)
    kmeans.train(np.ascontiguousarray(points, dtype=np.float32))
    return kmeans.centroids.astype(np.float32)


def _nearest(faiss, centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    return index.search(np.ascontiguousarray(points, dtype=np.float32), 1)[1][:, 0]


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
        check_sample_size(sample, self.settings["centroids"], f"rq centroids={self.settings['centroids']}")
        centroids = _kmeans(faiss, sample, self.settings["centroids"], seed)
        residuals = sample - centroids[_nearest(faiss, centroids, sample)]
        cutoffs, levels = _quantile_buckets(residuals, self.settings["bits"])
        return {"centroids": centroids, "cutoffs": cutoffs, "levels": levels}

    def _encode(self, faiss, codebook: dict, tokens: np.ndarray) -> dict:
        ids = _nearest(faiss, codebook["centroids"], tokens)
        residuals = _bucketize(tokens - codebook["centroids"][ids], codebook["cutoffs"])
        return {"centroid": ids.astype(np.uint16), "residual": pack_codes(residuals, self.settings["bits"])}

    def arrays(self) -> dict:
        return {"centroid": ((), np.dtype(np.uint16)),
                "residual": ((self.hidden_size * self.settings["bits"] // 8,), np.dtype(np.uint8))}
