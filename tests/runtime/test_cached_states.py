import numpy as np

from deformer_bench.runtime.cached_states import ServedPassageStates, gather_rows


def test_gather_rows_copies_the_rows_asked_in_order():
    hidden = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    gathered = gather_rows(hidden, [4, 0, 4])
    assert gathered.flags["C_CONTIGUOUS"] and np.array_equal(gathered, hidden[[4, 0, 4]])


def test_served_states_fill_a_file_of_whole_batches_and_give_back_the_batch(tmp_path):
    batch = np.random.default_rng(0).standard_normal((3, 4, 2)).astype(np.float32)  # 96 bytes
    served = ServedPassageStates(tmp_path / "served.npy", batch, min_bytes=1000)
    assert served.blocks == 11 and served.hidden.shape == (33, 4, 2)  # ceil(1000 / 96) batches
    assert served.file_bytes >= 1000 and isinstance(served.hidden, np.memmap)
    seen = []
    for _ in range(2 * served.blocks):
        rows = served.next_rows()
        assert np.array_equal(rows % 3, [0, 1, 2])  # window b of the batch, so the states are the batch's
        seen.append(int(rows[0]) // 3)
    assert sorted(seen[:served.blocks]) == list(range(served.blocks))  # every block once per pass ...
    assert seen[:served.blocks] != sorted(seen[:served.blocks])  # ... not in file order
    assert np.array_equal(served.next_states(), batch)


def test_one_batch_when_no_size_is_asked(tmp_path):
    batch = np.ones((2, 4, 2), dtype=np.float32)
    served = ServedPassageStates(tmp_path / "served.npy", batch, min_bytes=0)
    assert served.blocks == 1 and np.array_equal(served.next_states(), batch)


def test_served_codes_fill_files_of_whole_batches_and_decode_the_batch_in_every_call(tmp_path):
    """online_served_codec's source: the batch's codes (a pq codec's, by hand: two one-byte sub-vectors of 3
    dimensions) copied into memory-mapped files of at least min_bytes, gathered and decoded in every call."""
    from deformer_bench.runtime.cached_states import ServedPassageCodes
    from deformer_bench.runtime.codec_decode import make_decoder

    rng = np.random.default_rng(0)
    tables = rng.standard_normal((2, 256, 3)).astype(np.float32)
    decoder = make_decoder("pq", {"m": 2}, {"centroids": tables.ravel(), "sizes": np.array([3, 3], np.int32)})
    codes = rng.integers(0, 256, (2, 5, 2)).astype(np.uint8)  # 2 windows of 5 positions: 20 bytes a batch
    served = ServedPassageCodes({"codes": tmp_path / "served_codes.npy"}, {"codes": codes}, decoder, min_bytes=100)
    assert served.blocks == 5 and served.file_bytes == 100 and isinstance(served.mapped["codes"], np.memmap)
    expected = np.concatenate([tables[0][codes[..., 0]], tables[1][codes[..., 1]]], axis=-1)  # [2, 5, 6]
    for _ in range(served.blocks + 1):
        states = served.next_states()
        assert states.shape == (2, 5, 6) and states.dtype == np.float32
        np.testing.assert_array_equal(states, expected)
    served.remove()
    assert not (tmp_path / "served_codes.npy").exists()
