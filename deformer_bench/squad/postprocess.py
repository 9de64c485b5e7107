"""From start/end logits over windows to one answer text per question."""

from collections import defaultdict

import numpy as np

MAX_ANSWER_TOKENS = 30
N_BEST = 20


def best_span(start_logits, end_logits, token_offsets, question_len: int, n_best: int = N_BEST,
              max_answer_tokens: int = MAX_ANSWER_TOKENS):
    """(score, char_start, char_end) of the best span in one window's passage, or None.

    Only passage tokens that map to context text are candidates (not [CLS], the question, [SEP], padding).
    """
    valid = token_offsets[:, 0] >= 0  # [Lp]
    if not valid.any():
        return None
    passage_start = np.where(valid, start_logits[question_len:question_len + len(valid)], -np.inf)
    passage_end = np.where(valid, end_logits[question_len:question_len + len(valid)], -np.inf)
    starts = np.argsort(passage_start)[::-1][:n_best]
    ends = np.argsort(passage_end)[::-1][:n_best]
    best = None
    for start in starts:
        if not valid[start]:
            continue
        for end in ends:
            if not valid[end] or end < start or end - start + 1 > max_answer_tokens:
                continue
            score = passage_start[start] + passage_end[end]
            if best is None or score > best[0]:
                best = (float(score), int(token_offsets[start, 0]), int(token_offsets[end, 1]))
    return best


def predictions_from_logits(examples, features, start_logits, end_logits, question_len: int) -> dict:
    """{question id: answer text}: the best-scoring span across each question's windows."""
    best = defaultdict(lambda: None)
    for row, example_index in enumerate(features.example_index):
        candidate = best_span(start_logits[row], end_logits[row], features.token_offsets[row], question_len)
        if candidate and (best[example_index] is None or candidate[0] > best[example_index][0]):
            best[example_index] = candidate
    predictions = {}
    for index, example in enumerate(examples):
        span = best[index]
        predictions[example.id] = example.context[span[1]:span[2]] if span else ""
    return predictions
