"""Bounds shared by several commands, defined once: past them a typo (1e11 for 32) would run out of memory or never
end instead of being refused."""

# Windows or questions run through a graph at once, and a training batch: 65,536 of 224 x 384 float32 states are
# 22 GB per layer's output.
MAX_BATCH_SIZE = 65_536
