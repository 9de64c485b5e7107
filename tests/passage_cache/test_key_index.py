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


def test_a_key_set_finds_the_new_keys_as_a_python_set_does_at_16_bytes_a_key():
    """A build's keys new to the cache (issue 25's build-memory item): sorted arrays in levels, not a set."""
    from deformer_bench.passage_cache.key_index import KeySet

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(3000, 16), dtype=np.uint8)  # batches draw from it: repeats across and within
    seen, reference = KeySet(), set()
    for _ in range(40):
        batch = pool[rng.integers(0, len(pool), size=rng.integers(0, 300))]
        expected = []
        for position, key in enumerate(map(bytes, batch)):
            if key not in reference:
                reference.add(key)
                expected.append(position)
        assert seen.add_new(batch).tolist() == expected
    assert len(seen) == len(reference)
    assert sum(level.nbytes for level in seen.levels) == 16 * len(reference)
    sizes = [len(level) for level in seen.levels]
    assert all(larger >= 2 * smaller for larger, smaller in zip(sizes, sizes[1:]))  # O(log N) levels
    assert all((np.sort(level) == level).all() for level in seen.levels)


def test_a_key_set_says_which_keys_it_held_before_as_a_python_set_does():
    """KeySet.add (answer.unique_id_records' check of a passages file's id digests): held before this call, not
    given earlier in the same call; every key is held after."""
    from deformer_bench.passage_cache.key_index import KeySet

    rng = np.random.default_rng(1)
    pool = rng.integers(0, 256, size=(2000, 16), dtype=np.uint8)
    seen, reference = KeySet(), set()
    for _ in range(30):
        batch = pool[rng.integers(0, len(pool), size=rng.integers(0, 200))]
        keys = list(map(bytes, batch))
        assert seen.add(batch).tolist() == [key in reference for key in keys]
        reference.update(keys)
    assert len(seen) == len(reference)
    assert all((np.sort(level) == level).all() for level in seen.levels)
