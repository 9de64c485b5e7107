import json

import pandas as pd
import pytest

from deformer_bench.accuracy import collect, write
from deformer_bench.errors import DeformerBenchError


def test_table_from_a_finished_queue(tiny_queue_runs, tmp_path):
    _, runs = tiny_queue_runs
    records = {record["run"]: record for record in collect(runs)}
    assert set(records) == {"teacher", "k1-kd-lrs", "k1-none"}
    teacher_f1 = json.loads((runs / "teacher" / "eval.json").read_text())["f1"]
    for name, record in records.items():
        assert record["f1_drop"] == pytest.approx(teacher_f1 - record["f1"])
    assert records["teacher"]["flop_ideal_speedup"] == pytest.approx(1.0)
    assert records["k1-none"]["flop_ideal_speedup"] > 1.0
    assert (records["k1-kd-lrs"]["alpha"], records["k1-none"]["alpha"]) == (1.1, 0)

    write(list(records.values()), tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "accuracy.csv")
    assert sorted(frame["run"]) == ["k1-kd-lrs", "k1-none", "teacher"]
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 0


def test_no_teacher_is_a_clear_error(tiny_queue_runs, tmp_path):
    import shutil

    _, runs = tiny_queue_runs
    shutil.copytree(runs / "k1-none", tmp_path / "k1-none")
    with pytest.raises(DeformerBenchError, match="no evaluated teacher"):
        collect(tmp_path)
