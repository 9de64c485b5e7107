import numpy as np

from deformer_bench.passage_cache.key_index import KeyIndex, keys_array


def random_keys(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 16), dtype=np.uint8)


def test_every_stored_key_finds_its_row_and_others_find_none():
    keys = random_keys(1000)
    index = KeyIndex(keys)
    query = np.concatenate([keys[::-1], random_keys(50, seed=1)])
    rows = index.lookup(query)
    assert (rows[:1000] == np.arange(999, -1, -1)).all() and (rows[1000:] == -1).all()


def test_keys_sharing_a_prefix_are_told_apart_by_their_whole_bytes():
    keys = random_keys(6)
    keys[1:5, :8] = keys[0, :8]  # five keys with one 8-byte prefix, differing only in their last bytes
    stranger = keys[0].copy()
    stranger[15] ^= 1  # same prefix, stored nowhere
    index = KeyIndex(keys)
    assert index.lookup(keys).tolist() == [0, 1, 2, 3, 4, 5]
    assert index.lookup(stranger[None]).tolist() == [-1]


def test_a_key_stored_twice_maps_to_its_first_row_as_setdefault_would():
    keys = random_keys(5)
    keys[3] = keys[1]
    assert KeyIndex(keys).lookup(keys).tolist() == [0, 1, 2, 1, 4]


def test_empty_index_and_empty_query_and_a_list_of_byte_keys():
    keys = random_keys(3)
    assert KeyIndex(np.zeros((0, 16), np.uint8)).lookup(keys).tolist() == [-1, -1, -1]
    assert KeyIndex(keys).lookup([]).tolist() == []
    as_bytes = [bytes(key) for key in keys]
    assert (keys_array(as_bytes) == keys).all() and KeyIndex(as_bytes).lookup(as_bytes[::-1]).tolist() == [2, 1, 0]


def test_keys_of_another_type_or_width_are_refused_not_cast():
    import pytest

    with pytest.raises(ValueError, match=r"\[N, 16\] uint8"):
        KeyIndex(random_keys(3).astype(np.int64))
    with pytest.raises(ValueError, match=r"\[N, 16\] uint8"):
        KeyIndex(random_keys(3)[:, :8])
