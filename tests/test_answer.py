import pytest

from deformer_bench.answer import InputFileError, passage_examples, read_passages, read_questions

PASSAGE = '{"id": "p0", "text": "A passage."}\n'


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from deformer_bench.model import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


def test_featurize_survives_a_passage_of_no_tokens(minilm_tokenizer):
    """Zero-width characters only: no tokens, one window of [SEP] alone, no crash (library callers)."""
    from deformer_bench.squad.data import Example
    from deformer_bench.squad.features import featurize

    features = featurize([Example("q", "t", "\u200b\u200b", "Why?", ())], minilm_tokenizer, 8, 16, 4, progress=False)
    assert len(features) == 1 and features.passage_attention_mask[0].sum() == 1
    assert (features.token_offsets[0] == -1).all()


@pytest.mark.parametrize("passages, message", [
    (PASSAGE + '{"id": "p0", "text": "Again."}\n', "line 2: id 'p0' repeats line 1"),
    (PASSAGE + "not json\n", "line 2: not JSON"),
    ('{"id": "p0", "body": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('{"id": 7, "text": "A passage."}\n', "line 1: expected an object with string 'id', 'text'"),
    ('["p0", "A passage."]\n', "line 1: expected an object"),
    ('{"id": "p0", "text": "  "}\n', "line 1: passage 'p0' has no text"),
    (PASSAGE + '{"id": "p1", "text": "\\u200b\\u200b"}\n', "line 2: passage 'p1' has no text"),
    ("\n\n", "holds no passages"),
])
def test_bad_passages_files_name_the_line(tmp_path, passages, message, minilm_tokenizer):
    (tmp_path / "passages.jsonl").write_text(passages)
    with pytest.raises(InputFileError, match=message) as raised:
        read_passages(tmp_path / "passages.jsonl", minilm_tokenizer)
    assert raised.value.hint


@pytest.mark.parametrize("questions, message", [
    ('{"id": "q", "question": "Why?", "passage_id": "p9"}\n', "line 1: question 'q' asks about passage 'p9', which"),
    ('{"id": "q", "question": " ", "passage_id": "p0"}\n', "line 1: question 'q' is empty"),
    ('{"id": "q", "question": "\\u200b\\u2060", "passage_id": "p0"}\n', "line 1: question 'q' is empty"),
    ('{"id": "q", "question": "When \\ud800?", "passage_id": "p0"}\n', "line 1: a string holds an unpaired surrogate"),
    ('{"id": "q", "question": "Why?"}\n', "expected an object with string 'id', 'question', 'passage_id'"),
    ('{"id": "q", "question": "Why?", "passage_id": "p0"}\n' * 2, "line 2: id 'q' repeats line 1"),
])
def test_bad_questions_files_name_the_line(tmp_path, questions, message, minilm_tokenizer):
    (tmp_path / "questions.jsonl").write_text(questions)
    with pytest.raises(InputFileError, match=message):
        read_questions(tmp_path / "questions.jsonl", {"p0": "A passage."}, minilm_tokenizer)


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


def test_line_separators_inside_json_strings_and_a_byte_order_mark(tmp_path):
    """U+2028 and U+0085 may stand unescaped in JSON strings (ensure_ascii=False writes them so): they are text,
    not line ends; a UTF-8 byte-order mark is read past; CRLF line ends work."""
    import json

    lines = [json.dumps({"id": "p0", "text": "One\u2028two\u0085three."}, ensure_ascii=False),
             json.dumps({"id": "p1", "text": "Four."})]
    (tmp_path / "passages.jsonl").write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    assert read_passages(tmp_path / "passages.jsonl") == {"p0": "One\u2028two\u0085three.", "p1": "Four."}
    # a lone \r ends a line too (as Python's text files read it; JSON strings cannot hold a raw one)
    (tmp_path / "passages.jsonl").write_bytes(b'{"id": "p0", "text": "A."}\r{"id": "p1", "text": "B."}\r\r\n')
    assert read_passages(tmp_path / "passages.jsonl") == {"p0": "A.", "p1": "B."}
    (tmp_path / "passages.jsonl").write_bytes(b'{"id": "p0", "text": "A."}\r\r\n{"id": "p1", "text": "\xffB."}\n')
    with pytest.raises(InputFileError, match=r"line 3: not UTF-8 \(invalid start byte: byte b'\\xff' at byte 22"):
        read_passages(tmp_path / "passages.jsonl")
