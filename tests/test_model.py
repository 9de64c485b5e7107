import json

import pytest
import torch

from deformer_bench.contracts.errors import ConfigError, ModelDirError, UnsupportedArchitectureError
from deformer_bench.model import Deformer, DeformerConfig

from .conftest import tiny_qa_model


def segments(batch=2, question_len=8, passage_len=24, vocab=120, seed=0, pad_passage=True):
    generator = torch.Generator().manual_seed(seed)
    question = torch.randint(3, vocab, (batch, question_len), generator=generator)
    passage = torch.randint(3, vocab, (batch, passage_len), generator=generator)
    question_mask = torch.ones_like(question)
    passage_mask = torch.ones_like(passage)
    if pad_passage:
        passage_mask[1:, passage_len // 2:] = 0
    return question, question_mask, passage, passage_mask


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra"])
def test_k0_equals_the_unsplit_model(model_type):
    qa_model = tiny_qa_model(model_type)
    deformer = Deformer(qa_model, DeformerConfig(layer=0, question_len=8, passage_len=24,
                                                 passage_position_offset="question_len"))
    question, question_mask, passage, passage_mask = segments(pad_passage=model_type != "roberta")
    passage_type = deformer.architecture.passage_token_type(qa_model.config)
    with torch.no_grad():
        start, end = deformer(question, question_mask, passage, passage_mask)
        expected = qa_model(input_ids=torch.cat([question, passage], 1),
                            attention_mask=torch.cat([question_mask, passage_mask], 1),
                            token_type_ids=torch.cat([torch.zeros_like(question),
                                                      torch.full_like(passage, passage_type)], 1))
    assert start.shape == (2, 32)
    torch.testing.assert_close(start, expected.start_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(end, expected.end_logits, atol=1e-5, rtol=0)


def test_k_above_zero_changes_the_model():
    qa_model = tiny_qa_model()
    inputs = segments()
    with torch.no_grad():
        unsplit = Deformer(qa_model, DeformerConfig(0, 8, 24, "question_len"))(*inputs)[0]
        split = Deformer(qa_model, DeformerConfig(1, 8, 24, "question_len"))(*inputs)[0]
    assert (unsplit - split).abs().max() > 1e-3


@pytest.mark.parametrize("offset", ["question_len", "zero"])
@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra"])
def test_passage_states_do_not_depend_on_the_question(offset, model_type):
    deformer = Deformer(tiny_qa_model(model_type), DeformerConfig(layer=1, question_len=8, passage_len=24,
                                                                  passage_position_offset=offset))
    seen = []
    real_upper = deformer.upper

    def spy(question_hidden, question_mask, passage_hidden, passage_mask, **kwargs):
        seen.append(passage_hidden)
        return real_upper(question_hidden, question_mask, passage_hidden, passage_mask, **kwargs)

    deformer.upper = spy
    _, _, passage, passage_mask = segments()
    question_a, mask_a, _, _ = segments(seed=1)
    question_b, mask_b, _, _ = segments(seed=2, question_len=5)  # another question, another length
    with torch.no_grad():
        logits_a = deformer(question_a, mask_a, passage, passage_mask)[0]
        logits_b = deformer(question_b, mask_b, passage, passage_mask)[0]
    assert torch.equal(seen[0], seen[1])
    assert (logits_a[:, -24:] - logits_b[:, -24:]).abs().max() > 1e-4  # the upper layers do see the question


def test_passage_position_offset_sets_first_position():
    assert DeformerConfig(layer=1, question_len=30, passage_position_offset="question_len").passage_first_position() == 30
    assert DeformerConfig(layer=1, question_len=30).passage_first_position() == 30  # the default
    assert DeformerConfig(layer=1, question_len=30, passage_position_offset="zero").passage_first_position() == 0


def test_offsets_give_different_passage_states():
    qa_model = tiny_qa_model()
    _, _, passage, passage_mask = segments()
    with torch.no_grad():
        shifted = Deformer(qa_model, DeformerConfig(1, 8, 24, "question_len")).lower_passage(passage, passage_mask)
        zero = Deformer(qa_model, DeformerConfig(1, 8, 24, "zero")).lower_passage(passage, passage_mask)
    assert (shifted - zero).abs().max() > 1e-3


@pytest.mark.parametrize("layer", [-1, 3])
def test_layer_outside_range_is_refused(layer):
    with pytest.raises(ConfigError, match="layer|separation"):
        Deformer(tiny_qa_model(), DeformerConfig(layer=layer, question_len=8, passage_len=24))


def test_lengths_must_fit_the_position_table():
    with pytest.raises(ConfigError, match="position table has 96"):
        Deformer(tiny_qa_model(), DeformerConfig(layer=1, question_len=16, passage_len=90))


def test_unknown_offset_is_refused():
    with pytest.raises(ConfigError, match="offset"):
        DeformerConfig(layer=1, passage_position_offset="middle")


def test_unsupported_architecture(gpt2_dir):
    with pytest.raises(UnsupportedArchitectureError, match="unsupported architecture 'gpt2'; supported: bert, electra, roberta"):
        Deformer.from_pretrained(gpt2_dir, layer=1)


def test_missing_and_non_model_directories(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        Deformer.from_pretrained(tmp_path / "nope", layer=1)
    with pytest.raises(ModelDirError, match="no config.json"):
        Deformer.from_pretrained(tmp_path, layer=1)


def test_plain_directory_needs_a_layer(tiny_model_dir):
    with pytest.raises(ConfigError, match="--layer"):
        Deformer.from_pretrained(tiny_model_dir)


def test_save_and_load_round_trip(tiny_model_dir, tmp_path):
    deformer = Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24,
                                        passage_position_offset="zero")
    assert deformer.qa_head_trained
    deformer.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "deformer.json").read_text())["passage_position_offset"] == "zero"
    loaded = Deformer.from_pretrained(tmp_path / "saved")
    assert loaded.config == deformer.config
    assert loaded.fingerprint() == deformer.fingerprint()
    inputs = segments()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs)[0], deformer(*inputs)[0], atol=0, rtol=0)
    assert not list(tmp_path.glob(".*partial*"))


def test_encoder_without_qa_head_gets_the_same_head_every_load(tiny_encoder_dir):
    first = Deformer.from_pretrained(tiny_encoder_dir, layer=1, question_len=8, passage_len=24)
    second = Deformer.from_pretrained(tiny_encoder_dir, layer=1, question_len=8, passage_len=24)
    assert not first.qa_head_trained
    assert first.fingerprint() == second.fingerprint()


def test_weights_that_do_not_fit_the_config_are_refused(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["intermediate_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match="weights"):
        Deformer.from_pretrained(broken, layer=1, question_len=8, passage_len=24)


@pytest.mark.parametrize("damage, file, message", [
    ("truncated", "model.safetensors", "cannot load weights"),
    ("garbage", "model.safetensors", "cannot load weights"),
    ("empty", "model.safetensors", "cannot load weights"),
    ("a list", "config.json", "cannot read"),
    ("a list", "deformer.json", "must be a JSON object"),
])
def test_damaged_model_files_are_one_clear_error(tiny_model_dir, tmp_path, damage, file, message):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    DeformerConfig(1, 8, 24).save(model)
    path = model / file
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:len(data) // 3], "garbage": b"\x00" * 64, "empty": b"",
                      "a list": b"[]"}[damage])
    with pytest.raises(ModelDirError, match=message) as raised:
        Deformer.from_pretrained(model)
    assert raised.value.hint


def test_a_corrupt_tokenizer_is_one_clear_error(tmp_path):
    import shutil

    from deformer_bench.tokenizer import load_tokenizer
    from deformer_bench.model import default_model_dir

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    (model / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="cannot load the tokenizer"):
        load_tokenizer(model)


@pytest.mark.parametrize("file, change, message", [
    ("config.json", {"num_hidden_layers": "six"}, "config.json: num_hidden_layers must be a whole number"),
    ("config.json", {"hidden_size": 0}, "config.json: hidden_size must be a whole number"),
    ("deformer.json", {"layer": "1"}, r"deformer.json: layer must be an integer"),
])
def test_wrong_typed_values_name_their_file(tiny_model_dir, tmp_path, file, change, message):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    DeformerConfig(1, 8, 24).save(model)
    path = model / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ModelDirError, match=message):
        Deformer.from_pretrained(model)
