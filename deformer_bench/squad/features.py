"""Featurize SQuAD for the split model: question alone, passage windows alone, answer spans mapped.

Coordinates are those of the concatenation `[question (padded to Lq); passage window (padded to Lp)]`,
which both the DeFormer and the unsplit baseline read, so teacher and student share every position:
position 0 is [CLS] (where an answer outside the window points), passage token j is at Lq + j.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..contracts.errors import ConfigError


@dataclass
class Features:
    question_input_ids: np.ndarray  # [N, Lq] int64, `[CLS] q [SEP]` then padding
    question_attention_mask: np.ndarray  # [N, Lq]
    passage_input_ids: np.ndarray  # [N, Lp] int64, `p_window [SEP]` then padding
    passage_attention_mask: np.ndarray  # [N, Lp]
    token_offsets: np.ndarray  # [N, Lp, 2] char span of each passage token in its context; -1 where none
    start_positions: np.ndarray  # [N] in concatenated coordinates; 0 = no answer in this window
    end_positions: np.ndarray  # [N]
    example_index: np.ndarray  # [N] index into the examples list
    skipped_examples: int = 0  # training only: answers whose text is not at answer_start

    def __len__(self) -> int:
        return len(self.example_index)

    def unsplit_inputs(self, passage_token_type: int = 1) -> dict:
        """`input_ids`, `attention_mask`, `token_type_ids` of the unsplit model over the same windows."""
        question, passage = self.question_input_ids, self.passage_input_ids
        return {
            "input_ids": np.concatenate([question, passage], axis=1),
            "attention_mask": np.concatenate([self.question_attention_mask, self.passage_attention_mask], axis=1),
            "token_type_ids": np.concatenate([np.zeros_like(question), np.full_like(passage, passage_token_type)],
                                             axis=1),
        }


def answer_token_span(offsets, char_start: int, char_end: int):
    """First and last token (indices into `offsets`) overlapping [char_start, char_end), or None."""
    start = next((i for i, (a, b) in enumerate(offsets) if b > char_start), None)
    end = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < char_end), None)
    if start is None or end is None or end < start:
        return None
    return start, end


def window_starts(num_tokens: int, window: int, doc_stride: int) -> list:
    """Window start tokens; consecutive windows overlap by `doc_stride` tokens (Hugging Face's sense)."""
    step = max(1, window - doc_stride)
    starts = [0]
    while starts[-1] + window < num_tokens:
        starts.append(starts[-1] + step)
    return starts


def check_doc_stride(passage_len: int, doc_stride: int) -> None:
    """The overlap must leave each window some new tokens: at or past the window (passage_len - 1 tokens and
    [SEP]) the windows would slide by one token, one window per passage token."""
    if not 0 <= doc_stride < passage_len - 1:
        raise ConfigError(f"doc stride {doc_stride} (the overlap of consecutive windows) must be at least 0 and "
                          f"smaller than the passage window of {passage_len - 1} tokens",
                          f"give --doc-stride below {passage_len - 1} (128 for 224-token passages, as in training)")


@contextlib.contextmanager
def whole_passage_tokenization():
    """Tokenize a whole passage without transformers' "sequence length is longer than the specified maximum
    ... will result in indexing errors" warning: the passage is cut into windows of passage_len afterwards, so
    no sequence that long ever reaches the model."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def featurize(examples, tokenizer, question_len: int, passage_len: int, doc_stride: int = 128,
              training: bool = False, progress: bool = True) -> Features:
    """Windows for every example (training: one label per window from the first answer)."""
    check_doc_stride(passage_len, doc_stride)
    window = passage_len - 1  # room for [SEP]
    rows = {name: [] for name in ("question_input_ids", "question_attention_mask", "passage_input_ids",
                                  "passage_attention_mask", "token_offsets", "start_positions", "end_positions",
                                  "example_index")}
    passages = {}  # contexts repeat across questions: tokenize each once
    skipped = 0
    for index, example in enumerate(tqdm(examples, desc="featurize", unit="q", disable=not progress)):
        label = None
        if training:
            answer = example.answers[0]
            char_end = answer.start + len(answer.text)
            if example.context[answer.start:char_end] != answer.text:
                skipped += 1
                continue
            label = (answer.start, char_end)
        question = tokenizer(example.question, truncation=True, max_length=question_len, padding="max_length")
        if example.context not in passages:
            with whole_passage_tokenization():
                encoded = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True)
            passages[example.context] = (encoded["input_ids"], encoded["offset_mapping"])
        passage_ids, offsets = passages[example.context]
        span = answer_token_span(offsets, *label) if label else None
        for start in window_starts(len(passage_ids), window, doc_stride):
            ids = passage_ids[start:start + window] + [tokenizer.sep_token_id]
            padded = np.full(passage_len, tokenizer.pad_token_id, dtype=np.int64)
            padded[:len(ids)] = ids
            mask = np.zeros(passage_len, dtype=np.int64)
            mask[:len(ids)] = 1
            token_offsets = np.full((passage_len, 2), -1, dtype=np.int64)
            window_offsets = offsets[start:start + window]
            if window_offsets:  # a passage the tokenizer reads as no tokens has none
                token_offsets[:len(window_offsets)] = window_offsets
            start_position = end_position = 0
            if span and start <= span[0] and span[1] < start + len(window_offsets):
                start_position = question_len + span[0] - start
                end_position = question_len + span[1] - start
            rows["question_input_ids"].append(np.asarray(question["input_ids"], dtype=np.int64))
            rows["question_attention_mask"].append(np.asarray(question["attention_mask"], dtype=np.int64))
            rows["passage_input_ids"].append(padded)
            rows["passage_attention_mask"].append(mask)
            rows["token_offsets"].append(token_offsets)
            rows["start_positions"].append(start_position)
            rows["end_positions"].append(end_position)
            rows["example_index"].append(index)
    arrays = {name: np.asarray(values, dtype=np.int64) for name, values in rows.items()}
    return Features(**arrays, skipped_examples=skipped)
