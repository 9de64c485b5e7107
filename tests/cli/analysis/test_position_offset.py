import json
import subprocess
import sys

from tests.conftest import SQUAD_DIR


def test_study_compares_both_offsets_at_every_k(tiny_with_tokenizer, tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "deformer_bench.cli.analysis.position_offset", "--model", str(tiny_with_tokenizer),
               "--dataset", str(SQUAD_DIR / "dev-v1.1.json.gz"), "--count", "6", "--question-len", "16",
               "--passage-len", "48", "--out", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    result = json.loads((out / "position_offset.json").read_text())
    cells = {(row["offset"], row["layer"], row["compared_at"]) for row in result["rows"]}
    assert cells == {(o, k, w) for o in ("zero", "question_len") for k in (1, 2) for w in ("layer_k", "last_layer")}
    assert all(-1.0 <= row["mean_cosine"] <= 1.0 and row["examples"] == 6 for row in result["rows"])
    assert (out / "position_offset.png").exists() and (out / "position_offset.csv").exists()
    # k = L has no upper layers: the last layer is layer k.
    by_cell = {(row["offset"], row["layer"], row["compared_at"]): row["mean_cosine"] for row in result["rows"]}
    assert abs(by_cell[("zero", 2, "layer_k")] - by_cell[("zero", 2, "last_layer")]) < 1e-6
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_unsplit_states_use_the_familys_passage_token_type():
    """RoBERTa has one token type: type 1 would index past its table (the study hard-coded 1)."""
    import torch

    from deformer_bench.cli.analysis.position_offset import unsplit_states
    from tests.conftest import tiny_qa_model

    qa_model = tiny_qa_model("roberta")
    ids = torch.randint(3, 120, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        hidden, spans = unsplit_states(qa_model, ids, mask, ids, mask)
    assert len(hidden) == 3 and spans == [(6, 6), (6, 6)]
