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
