import json
import subprocess
import sys

import pytest

from tests.conftest import SQUAD_DIR

DEV = SQUAD_DIR / "dev-v1.1.json.gz"


def cli(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.eval", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def test_model_directory_without_a_tokenizer(tiny_model_dir):
    code, _, stderr = cli("--dataset", DEV, "--model", tiny_model_dir, "--layer", "1", "--question-len", "8",
                          "--passage-len", "24", "--limit", "2", "--quiet")
    assert code == 2 and "has no tokenizer" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("content, message", [("[1, 2]", "JSON object"), ("{bad", "cannot read predictions")])
def test_bad_predictions_files(tmp_path, content, message):
    path = tmp_path / "pred.json"
    path.write_text(content)
    code, _, stderr = cli("--dataset", DEV, "--predictions", path)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_malformed_dataset_names_the_question(tmp_path):
    document = {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "q9", "question": "?"}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    (tmp_path / "pred.json").write_text("{}")
    code, _, stderr = cli("--dataset", path, "--predictions", tmp_path / "pred.json")
    assert code == 2 and "question 'q9'" in stderr and "Traceback" not in stderr
