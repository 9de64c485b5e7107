"""binary: one bit a dimension, the sign around the mean, and a float16 scale per token and group of dimensions."""

import numpy as np

from .base import Codec, CodecError, check_sample_size, is_whole, pack_codes

SCALE_DTYPE = np.float16


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
        check_sample_size(sample, 2, "binary")  # two levels a dimension
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
        return {"signs": pack_codes(positive, 1), "scale": scales}

    def arrays(self) -> dict:
        return {"signs": ((self.hidden_size // 8,), np.dtype(np.uint8)),
                "scale": ((self.hidden_size // self.settings["group"],), np.dtype(SCALE_DTYPE))}
