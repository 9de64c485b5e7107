"""How passage states [N, Lp, H] are stored: float32 as computed, float16, or int8 with one scale per token
(numpy only; decoded to float32 at read, the only dtype the upper graph takes).

int8: scale[n, t] = max_h |x[n, t, h]| / 127, q = round(x / scale) in [-127, 127]; a token's largest state keeps
its value, the others move by at most scale / 2. Per token, not per window: a window's tokens differ in range
(padding states are small, [CLS]-like ones large), and one scale would spend the 8 bits on the largest.
"""

import numpy as np

from ..errors import PassageCacheError

DTYPES = ("float32", "float16", "int8")
STORED = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
INT8_LEVELS = 127
FLOAT16_MAX = float(np.finfo(np.float16).max)


def bytes_per_window(dtype: str, passage_len: int, hidden_size: int) -> int:
    """Stored bytes of one window's states (int8 adds its float32 scales), without its key."""
    states = passage_len * hidden_size * np.dtype(STORED[dtype]).itemsize
    return states + (passage_len * 4 if dtype == "int8" else 0)


def encode(hidden: np.ndarray, dtype: str) -> dict:
    """{"passage_hidden": stored array[, "passage_scale": float32 [N, Lp]]} of float32 states [N, Lp, H]."""
    hidden = np.asarray(hidden, dtype=np.float32)
    if not np.isfinite(hidden).all():
        raise PassageCacheError("lower_passage gave states that are not finite (NaN or infinity): they would be "
                                "stored and served as they are", "check the graph set (deformer-export validates it)")
    if dtype == "float16" and hidden.size and np.abs(hidden).max() > FLOAT16_MAX:
        raise PassageCacheError(f"passage states reach {np.abs(hidden).max():.4g}, beyond float16's {FLOAT16_MAX:g}: "
                                "they would be stored as infinity",
                                "store them as float32 or int8 (deformer-cache build --dtype)")
    if dtype == "float32":
        return {"passage_hidden": hidden}
    if dtype == "float16":
        return {"passage_hidden": hidden.astype(np.float16)}
    scale = np.abs(hidden).max(axis=-1) / INT8_LEVELS  # [N, Lp]
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero token: any scale decodes it
    quantized = np.clip(np.rint(hidden / scale[..., None]), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return {"passage_hidden": quantized, "passage_scale": scale}


def decode(hidden: np.ndarray, scale: np.ndarray = None) -> np.ndarray:
    """float32 [N, Lp, H] from stored states (and, for int8, their scales [N, Lp])."""
    if hidden.dtype == np.int8:
        return hidden.astype(np.float32) * scale[..., None]
    return np.asarray(hidden, dtype=np.float32)
