import gzip
import json

import pytest

from deformer_bench.squad.data import DatasetError, load_squad
from tests.conftest import SQUAD_DIR


def test_official_dev_set_loads_whole():
    examples = load_squad(SQUAD_DIR / "dev-v1.1.json.gz")
    assert len(examples) == 10570
    assert len({e.title for e in examples}) == 48
    assert sum(len(e.answers) for e in examples) == 34726
    first = examples[0]
    assert first.context[first.answers[0].start:].startswith(first.answers[0].text)


def small_document():
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": "Paris is in France.", "qas": [
            {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}


def test_plain_and_gzipped_json(tmp_path):
    plain = tmp_path / "d.json"
    plain.write_text(json.dumps(small_document()))
    zipped = tmp_path / "d.json.gz"
    with gzip.open(zipped, "wt") as handle:
        json.dump(small_document(), handle)
    assert load_squad(plain) == load_squad(zipped)
    assert load_squad(plain)[0].answers[0].text == "France"


def test_malformed_question_is_named(tmp_path):
    document = small_document()
    del document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match=r"article 0 \('T'\), paragraph 0, question 'q1'"):
        load_squad(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_squad(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid"):
        load_squad(tmp_path / "x.json")


def _squad(tmp_path, qas, text=None):
    import json

    document = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": qas}]}]}
    path = tmp_path / "squad.json"
    path.write_text(text if text is not None else json.dumps(document), encoding="utf-8")
    return path


QA = {"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}


@pytest.mark.parametrize("qas, message", [
    ([QA, {**QA, "question": "Again?"}], "the id repeats"),
    ([{**QA, "answers": []}], "no answers"),
    ([], "holds no questions"),
    ([{**QA, "question": "When \ud800?"}], "unpaired surrogate"),
])
def test_datasets_that_cannot_be_scored_honestly_are_refused(tmp_path, qas, message):
    from deformer_bench.squad.data import DatasetError, load_squad

    with pytest.raises(DatasetError, match=message):
        load_squad(_squad(tmp_path, qas))


def test_a_byte_order_mark_is_read_past(tmp_path):
    import json

    from deformer_bench.squad.data import load_squad

    document = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [QA]}]}]}
    path = _squad(tmp_path, [], text="\ufeff" + json.dumps(document))
    assert [example.id for example in load_squad(path)] == ["q1"]
