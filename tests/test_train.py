import json

import pytest
import torch

from deformer_bench.model import Deformer, DeformerConfig
from deformer_bench.train import CheckpointError, TrainConfig, distillation_losses, split_forward, train


def config(tmp_path, init, train_file, **changes):
    settings = dict(output_dir=str(tmp_path), init_dir=str(init), train_file=str(train_file), question_len=16,
                    passage_len=64, doc_stride=16, batch_size=8, epochs=1.0, checkpoint_every=2, bf16=False,
                    learning_rate=1e-3, layer=0, gamma=1.0, alpha=0.0, beta=0.0)
    settings.update(changes)
    return TrainConfig(**settings)


def test_losses_vanish_when_student_equals_teacher():
    from tests.conftest import tiny_qa_model

    qa_model = tiny_qa_model()
    deformer = Deformer(qa_model, DeformerConfig(0, 8, 24, "question_len"))
    batch = {"question_input_ids": torch.randint(3, 120, (2, 8)), "question_attention_mask": torch.ones(2, 8, dtype=torch.long),
             "passage_input_ids": torch.randint(3, 120, (2, 24)), "passage_attention_mask": torch.ones(2, 24, dtype=torch.long),
             "start_positions": torch.tensor([9, 0]), "end_positions": torch.tensor([10, 0])}
    cfg = TrainConfig(output_dir="x", init_dir="x", train_file="x", layer=1, teacher_dir="t")
    layers = []
    with torch.no_grad():
        logits = split_forward(deformer, batch, layers)
    terms = distillation_losses(cfg, batch, logits, layers[1:], logits, layers)
    assert terms["kd"].abs() < 1e-6 and terms["lrs"] == 0 and terms["ce"] > 0


@pytest.mark.parametrize("changes, message", [
    (dict(layer=4, alpha=1.1, beta=0.5), "need a teacher"),
    (dict(layer=0, alpha=1.0, teacher_dir="t"), "nothing to distil"),
    (dict(gamma=0, alpha=0, beta=0), "not all 0"),
    (dict(passage_len=64, doc_stride=128), "smaller than the passage window of 63"),
    (dict(device="gpu"), "training device 'gpu' is unknown"),
])
def test_bad_training_configs(changes, message):
    from deformer_bench.contracts.errors import ConfigError

    base = dict(output_dir="o", init_dir="i", train_file="f", gamma=1.0, alpha=0.0, beta=0.0)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**base, **changes})


def test_teacher_then_student_train_resume_and_refuse_foreign_checkpoints(tmp_path, tiny_with_tokenizer,
                                                                          small_train_file, monkeypatch):
    teacher_dir = train(config(tmp_path / "teacher", tiny_with_tokenizer, small_train_file), ["test"], progress=False)
    teacher = Deformer.from_pretrained(teacher_dir)
    assert teacher.config.layer == 0 and teacher.config.passage_position_offset == "question_len"
    assert (tmp_path / "teacher" / "DONE").exists() and not (tmp_path / "teacher" / "checkpoint").exists()

    student_config = config(tmp_path / "student", teacher_dir, small_train_file, layer=1, gamma=0.7, alpha=1.1,
                            beta=0.5, teacher_dir=str(teacher_dir))
    # Interrupt the student after its first checkpoint (step 2) ...
    import deformer_bench.train as training

    real_save = training.save_checkpoint

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(student_config, ["test"], progress=False)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert (tmp_path / "student" / "checkpoint" / "state.pt").exists()
    # ... a run with other settings refuses that checkpoint ...
    other = config(tmp_path / "student", teacher_dir, small_train_file, layer=1, gamma=0.7, alpha=1.1, beta=0.5,
                   teacher_dir=str(teacher_dir), learning_rate=5e-4)
    with pytest.raises(CheckpointError, match="learning_rate"):
        train(other, ["test"], progress=False)
    # ... a teacher that holds other weights than when the run started is refused (the record names the first) ...
    record_path = tmp_path / "student" / "train_config.json"
    first_record = record_path.read_text()
    record_path.write_text(json.dumps({**json.loads(first_record), "teacher_fingerprint_sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="the teacher model .* holds other weights than when the run started"):
        train(student_config, ["test"], progress=False)
    record_path.write_text(first_record)
    # ... and the same settings resume from step 2 to the end, dropping log lines of the work the
    # interruption lost (a line for step 3 stands in for them).
    log_path = tmp_path / "student" / "train_log.jsonl"
    with open(log_path, "a") as log:
        log.write(json.dumps({"step": 3, "loss": 1.0, "elapsed_s": 1e6}) + "\n")
    student_dir = train(student_config, ["test"], progress=False)
    steps = [json.loads(line)["step"] for line in log_path.read_text().splitlines()]
    record = json.loads((tmp_path / "student" / "train_config.json").read_text())
    assert record["resumed_from_step"] == 2
    assert steps == sorted(set(steps)) and steps[-1] == record["total_steps"] > 2
    assert json.loads(log_path.read_text().splitlines()[-1])["elapsed_s"] < 1e6
    assert [start["from_step"] for start in record["starts"]] == [0, 2]
    assert all(start["environment"]["packages"]["torch"] for start in record["starts"])
    log = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert {"ce", "kd", "lrs"} <= set(log[-1])
    student = Deformer.from_pretrained(student_dir)
    assert student.config.layer == 1 and student.fingerprint() != teacher.fingerprint()
    # the record names the weights the run started from and distilled from (the resumed start too: the init
    # weights, not the checkpoint's) and the student's shape, which readers take without the saved model
    assert record["init_fingerprint_sha256"] == record["teacher_fingerprint_sha256"] == teacher.fingerprint()
    hf_config = teacher.qa_model.config
    assert record["model_shape"] == {"num_layers": hf_config.num_hidden_layers, "hidden_size": hf_config.hidden_size,
                                     "intermediate_size": hf_config.intermediate_size}
    teacher_record = json.loads((tmp_path / "teacher" / "train_config.json").read_text())
    assert teacher_record["teacher_fingerprint_sha256"] is None


def test_a_cuda_run_without_cuda_is_refused_before_any_work(tmp_path, tiny_with_tokenizer, small_train_file,
                                                            monkeypatch):
    import dataclasses

    from deformer_bench.contracts.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = dataclasses.replace(config(tmp_path / "run", tiny_with_tokenizer, small_train_file), device="cuda")
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        train(run, ["test"], progress=False)
    assert not (tmp_path / "run").exists()


def test_a_run_that_cannot_start_leaves_no_directory(tmp_path, tiny_with_tokenizer):
    from deformer_bench.squad.data import DatasetError

    run = config(tmp_path / "run", tiny_with_tokenizer, tmp_path / "missing.json")
    with pytest.raises(DatasetError):
        train(run, ["test"], progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["init itself", "holds init", "init's model folder", "foreign folder", "a file",
                                   "holds the training file", "init through a link"])
def test_run_directory_that_would_harm_data_is_refused(tmp_path, tiny_with_tokenizer, small_train_file, where):
    import shutil

    from deformer_bench.contracts.errors import OutputLocationError

    model = tmp_path / "x" / "model"
    shutil.copytree(tiny_with_tokenizer, model)
    (tmp_path / "data").mkdir()
    train_file = tmp_path / "data" / "train.json"
    shutil.copy(small_train_file, train_file)
    (tmp_path / "link").symlink_to(model)
    output = {"init itself": model, "holds init": tmp_path / "x", "init's model folder": model / "run",
              "foreign folder": tmp_path / "mine", "a file": tmp_path / "file",
              "holds the training file": tmp_path / "data",  # issue 22, finding 1: the training file is read too
              "init through a link": tmp_path / "link" / "run"}[where]
    if where == "holds the training file":  # a run's folder (an interrupted run) with the training file in it
        (output / "train_config.json").write_text("{}")
    if where == "foreign folder":
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    if where == "a file":
        output.write_text("mine")
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    with pytest.raises(OutputLocationError):
        train(config(output, model, train_file), ["test"], progress=False)
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before  # nothing created, nothing removed


def test_a_corrupt_checkpoint_is_one_clear_error(tmp_path, tiny_with_tokenizer, small_train_file):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    (run / "checkpoint" / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        train(config(run, tiny_with_tokenizer, small_train_file), ["test"], progress=False)


def test_a_checkpoint_save_killed_mid_swap_is_put_back(tmp_path):
    """The old checkpoint was moved aside and the kill came before the new one was renamed in."""
    from deformer_bench.files import clean_stale_staging

    checkpoint = tmp_path / "checkpoint"
    aside = tmp_path / ".checkpoint.replaced-999999999"  # a process id that does not exist
    aside.mkdir()
    (aside / "state.pt").write_bytes(b"old state")
    clean_stale_staging(checkpoint)
    assert (checkpoint / "state.pt").read_bytes() == b"old state" and not aside.exists()


@pytest.mark.parametrize("changes, message", [
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
    (dict(checkpoint_every=0), "checkpoint_every must be >= 1"),
    (dict(max_examples=-1), "max_examples must be a whole number"),
    (dict(bf16="yes"), "bf16 must be true or false"),
    # issue 22, finding 14: a seed torch cannot take (a ValueError deep in the run), epochs that would not end
    (dict(seed=10**20), "seed \\(at most 4,294,967,295\\) and epochs"),
    (dict(epochs=1e9), "epochs \\(at most 1,000\\) are out of range"),
])
def test_bad_numbers_in_training_configs(changes, message):
    from deformer_bench.contracts.errors import ConfigError

    base = dict(output_dir="o", init_dir="i", train_file="f", gamma=1.0, alpha=0.0, beta=0.0)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**base, **changes})


def test_a_finished_run_is_reused_only_with_its_own_settings(tmp_path, tiny_with_tokenizer, small_train_file):
    import shutil

    from deformer_bench.contracts.errors import ConfigError, OutputLocationError

    run = config(tmp_path / "run", tiny_with_tokenizer, small_train_file, max_examples=8)
    model_dir = train(run, ["test"], progress=False)
    assert train(run, ["test"], progress=False) == model_dir  # the same settings: reused
    import dataclasses

    moved = dataclasses.replace(run, init_dir=str(tiny_with_tokenizer) + "/.", train_file=str(small_train_file) + "")
    assert train(moved, ["test"], progress=False) == model_dir  # paths spelled otherwise: still the same run
    with pytest.raises(ConfigError, match="finished run of other settings .*layer"):
        train(config(tmp_path / "run", tiny_with_tokenizer, small_train_file, max_examples=8, layer=1), ["test"],
              progress=False)
    user = tmp_path / "user"  # a folder that merely holds a file called DONE
    user.mkdir()
    (user / "DONE").write_text("mine")
    with pytest.raises(OutputLocationError, match="not a finished run"):
        train(config(user, tiny_with_tokenizer, small_train_file), ["test"], progress=False)
    shutil.rmtree(tmp_path / "run" / "model")
    with pytest.raises(OutputLocationError, match="holds no model"):
        train(run, ["test"], progress=False)


def test_a_diverging_loss_stops_the_run(tmp_path, tiny_with_tokenizer, small_train_file):
    from deformer_bench.train import TrainingDiverged

    run = config(tmp_path / "run", tiny_with_tokenizer, small_train_file, learning_rate=1e30, warmup_ratio=0.0,
                 max_examples=8, batch_size=2)
    with pytest.raises(TrainingDiverged, match="the loss became nan") as raised:
        train(run, ["test"], progress=False)
    assert raised.value.exit_code == 3 and not (tmp_path / "run" / "model").exists()


def test_too_little_room_to_train_is_refused_up_front(tmp_path, tiny_with_tokenizer, small_train_file, monkeypatch):
    from types import SimpleNamespace

    import deformer_bench.training_checks as checks
    from deformer_bench.contracts.errors import DiskFullError

    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(DiskFullError, match="training needs about"):
        train(config(tmp_path / "run", tiny_with_tokenizer, small_train_file), ["test"], progress=False)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_saving_is_a_disk_full_error(tmp_path):
    from deformer_bench.contracts.errors import DiskFullError
    from deformer_bench.training_checks import saving

    with pytest.raises(DiskFullError, match="while saving the checkpoint"):
        with saving(tmp_path, "checkpoint"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos; No space left on device")
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with saving(tmp_path, "checkpoint"):
            raise ValueError("a bug")


@pytest.mark.parametrize("changes, message", [
    (dict(layer=0, passage_position_offset="zero"), "the teacher .* always places passages"),
    (dict(layer=1, teacher_dir="t", alpha=0.0, beta=0.0), "it would not be used"),
    (dict(layer=1, passage_position_offset="zeroo"), "unknown passage position offset"),
])
def test_settings_that_would_be_ignored_are_refused(changes, message):
    from deformer_bench.contracts.errors import ConfigError

    base = dict(output_dir="o", init_dir="i", train_file="f", gamma=1.0, alpha=0.0, beta=0.0)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**base, **changes})


def test_a_batch_size_past_its_bound_is_refused():
    """batch_size 100000000000 in a queue was taken (a batch of the whole training set); counts are bounded."""
    from deformer_bench.contracts.errors import ConfigError

    base = dict(output_dir="o", init_dir="i", train_file="f", gamma=1.0, alpha=0.0, beta=0.0)
    TrainConfig(**base, batch_size=65_536)
    with pytest.raises(ConfigError, match="batch_size must be at most 65,536"):
        TrainConfig(**base, batch_size=100_000_000_000)
