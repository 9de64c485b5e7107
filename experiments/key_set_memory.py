"""Issue 25, build memory: what a build's new keys hold, 1M random 16-byte keys added in 50 shards of 20,000, as a
Python set of bytes (before) and as key_index.KeySet (after); tracemalloc's held and peak bytes, per key.

    python experiments/key_set_memory.py
"""
import tracemalloc

import numpy as np
from deformer_bench.passage_cache.key_index import KeySet

N, SHARD = 1_000_000, 20_000
keys = np.random.default_rng(0).integers(0, 256, (N, 16), dtype=np.uint8)
for name in ("set", "KeySet"):
    tracemalloc.start()
    seen = set() if name == "set" else KeySet()
    for start in range(0, N, SHARD):
        batch = keys[start:start + SHARD]
        if name == "set":
            for key in map(bytes, batch):
                if key not in seen:
                    seen.add(key)
        else:
            seen.add_new(batch)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{name}: {len(seen):,} keys, held {current / N:.1f} bytes a key, peak {peak / N:.1f}")
    del seen
