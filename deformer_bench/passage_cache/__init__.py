"""A real passage cache: `lower_passage` runs once per distinct passage window, offline; the online path reads it.

store.py   the directory format (segments of memory-mapped numpy arrays, cache.json with their sha256s), reads
cache_files.py  a segment's files (their arrays, .npy headers, checksums) and the codebook, one by one
schema.py  cache.json's schema, checked whole at open
key_index.py  window key -> row, as sorted arrays (32 bytes a window)
codecs.py  float32, float16 and int8-with-per-token-scales storage of the states
build.py   building, resuming a killed build, appending new passages
engines.py the build engines' interface (BuildEngine) and this process's (LocalEngine); ray_engine.py Ray's
segments.py  a segment's states computed, encoded and written, whichever engine writes it
build_codec.py  a build's learned codec (quantizers/): checked, trained, or the cache's own
quantizers/  the learned codecs (pq, rq, binary) a cache may store its states in
lock.py    one build at a time per cache directory
"""

from .build import SEGMENT_WINDOWS, CacheCommands, build_passage_cache, build_passage_cache_from_shards
from .codecs import DTYPES, bytes_per_window
from .engines import BuildEngine, LocalEngine
from .store import PassageCache, check_free_space, distinct_windows, graph_identity, load_passage_cache, window_keys

__all__ = ["DTYPES", "SEGMENT_WINDOWS", "BuildEngine", "CacheCommands", "LocalEngine", "PassageCache",
           "build_passage_cache",
           "build_passage_cache_from_shards",
           "bytes_per_window",
           "check_free_space", "distinct_windows", "graph_identity", "load_passage_cache", "window_keys"]
