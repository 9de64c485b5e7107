"""A segment folder that no cache.json entry lists is named as such (issue 22, finding 6)."""

import json

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.passage_cache import load_passage_cache


def test_a_segment_no_entry_lists_is_named_not_blamed_on_other_passages(cache):
    graph_set, directory, ids = cache
    record = json.loads((directory / "cache.json").read_text())
    dropped = record["segments"].pop()  # its entry lost: the folder stays
    record["windows"] -= dropped["windows"]
    (directory / "cache.json").write_text(json.dumps(record))
    opened = load_passage_cache(directory, graph_set)
    with pytest.raises(PassageCacheError, match="segment-00001 in its folder is listed by no cache.json") as error:
        opened.rows(ids, np.ones_like(ids))
    assert "other passages" not in str(error.value)
    with pytest.raises(PassageCacheError, match="segment-00001 is in its folder, and no cache.json entry lists it: "
                                                "an entry was removed from cache.json") as error:
        opened.verify()
    assert "remove the folder" in error.value.hint
    # an unfinished build's leftover (renamed, never listed) names the command that goes on and removes it
    record.update(complete=False, unfinished_build={"windows_sha256": "0" * 64, "windows": 4, "append": False,
                                                    "command": "deformer-cache build G --passages P --out C"})
    (directory / "cache.json").write_text(json.dumps(record))
    with pytest.raises(PassageCacheError, match="a build killed between writing a segment and listing it") as error:
        load_passage_cache(directory, graph_set).verify()
    assert "deformer-cache build G --passages P --out C" in error.value.hint


def test_a_build_at_work_is_not_called_damage(cache):
    import fcntl

    from deformer_bench.passage_cache.lock import LOCK_FILE

    graph_set, directory, _ = cache
    (directory / "segment-00007").mkdir()  # renamed a moment ago, listed a moment later
    with open(directory / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PassageCacheError, match="a build is writing this cache now"):
            load_passage_cache(directory, graph_set).verify()
