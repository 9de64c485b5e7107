import json

import pytest

from deformer_bench.cli.analysis.split_teacher import RESULTS_FILE, main


def test_split_teacher_rows_and_the_unsplit_row_matches_the_queue_evaluation(tiny_queue_runs, small_train_file,
                                                                            tmp_path):
    runs = tiny_queue_runs[1]
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exit_info:
        main(["--teacher", str(runs / "teacher" / "model"), "--dataset", str(small_train_file), "--count", "6",
              "--layers", "1,2", "--doc-stride", "16", "--out", str(out), "--quiet"])  # the queue's stride
    assert exit_info.value.code == 0
    result = json.loads((out / RESULTS_FILE).read_text())
    cases = [(row["layer"], row["offset"]) for row in result["rows"]]
    assert cases == [(0, "question_len"), (1, "zero"), (1, "question_len"), (2, "zero"), (2, "question_len")]
    assert result["rows"][0]["f1"] == json.loads((runs / "teacher" / "eval.json").read_text())["f1"]
    assert result["environment"]["git"]["commit"] and (out / "split_teacher.png").exists()

    with pytest.raises(SystemExit) as exit_info:  # never overwrites
        main(["--teacher", str(runs / "teacher" / "model"), "--dataset", str(small_train_file), "--out", str(out)])
    assert exit_info.value.code == 2
