import pytest

from deformer_bench.answer import InputFileError, passage_examples, read_passages, read_questions

PASSAGE = '{"id": "p0", "text": "A passage."}\n'


@pytest.mark.parametrize("passages, message", [
    (PASSAGE + '{"id": "p0", "text": "Again."}\n', "line 2: id 'p0' repeats line 1"),
    (PASSAGE + "not json\n", "line 2: not JSON"),
    ('{"id": "p0", "body": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('{"id": 7, "text": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('["p0", "A passage."]\n', "line 1: expected an object"),
    ('{"id": "p0", "text": "  "}\n', "passage 'p0' has no text"),
    ("\n\n", "holds no passages"),
])
def test_bad_passages_files_name_the_line(tmp_path, passages, message):
    (tmp_path / "passages.jsonl").write_text(passages)
    with pytest.raises(InputFileError, match=message) as raised:
        read_passages(tmp_path / "passages.jsonl")
    assert raised.value.hint


@pytest.mark.parametrize("questions, message", [
    ('{"id": "q", "question": "Why?", "passage_id": "p9"}\n', "asks about passage 'p9', which the passages file"),
    ('{"id": "q", "question": "Why?"}\n', "expected an object with string 'id', 'question', 'passage_id'"),
    ('{"id": "q", "question": "Why?", "passage_id": "p0"}\n' * 2, "line 2: id 'q' repeats line 1"),
])
def test_bad_questions_files_name_the_line(tmp_path, questions, message):
    (tmp_path / "questions.jsonl").write_text(questions)
    with pytest.raises(InputFileError, match=message):
        read_questions(tmp_path / "questions.jsonl", {"p0": "A passage."})


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot read the passages file"):
        read_passages(tmp_path / "absent.jsonl")


def test_questions_become_examples_over_their_passage_text(tmp_path):
    (tmp_path / "passages.jsonl").write_text(PASSAGE + '\n{"id": "p1", "text": "Another one."}\n')
    (tmp_path / "questions.jsonl").write_text('{"id": "q1", "question": "Which?", "passage_id": "p1", "extra": 1}\n')
    passages = read_passages(tmp_path / "passages.jsonl")
    assert passages == {"p0": "A passage.", "p1": "Another one."}
    [example] = read_questions(tmp_path / "questions.jsonl", passages)
    assert (example.id, example.question, example.context, example.answers) == ("q1", "Which?", "Another one.", ())
    assert [(e.id, e.question, e.context) for e in passage_examples(passages)] == [
        ("p0", "", "A passage."), ("p1", "", "Another one.")]
