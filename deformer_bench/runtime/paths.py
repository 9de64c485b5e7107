"""The measured paths over a graph set's sessions, on inputs made from a seed: what the runner times and checks,
what the host computes its parity reference with, and what an exported variant is validated on."""

import numpy as np

from ..contracts.protocol import MISS_PATH, SERVED_CACHE_FILE, SERVED_PATH, InputSpec
from .cached_states import ServedPassageStates


def make_inputs(spec: InputSpec) -> dict:
    """Full-length inputs of one batch: the worst case a deployment pads to."""
    rng = np.random.default_rng(spec.seed)
    batch, question_len, passage_len = spec.batch_size, spec.question_len, spec.passage_len
    question_ids = rng.integers(3, spec.vocab_size, (batch, question_len), dtype=np.int64)
    passage_ids = rng.integers(3, spec.vocab_size, (batch, passage_len), dtype=np.int64)
    question_mask = np.ones((batch, question_len), dtype=np.int64)
    passage_mask = np.ones((batch, passage_len), dtype=np.int64)
    return {
        "question_input_ids": question_ids, "question_attention_mask": question_mask,
        "passage_input_ids": passage_ids, "passage_attention_mask": passage_mask,
        "input_ids": np.concatenate([question_ids, passage_ids], axis=1),
        "attention_mask": np.concatenate([question_mask, passage_mask], axis=1),
        "token_type_ids": np.concatenate(
            [np.zeros_like(question_ids), np.full_like(passage_ids, spec.passage_token_type)], axis=1),
    }


def path_call(path, graph_set, inputs, passage_cache, served=None):
    """A no-argument function that runs one path once on a GraphSetSessions (`served`: a ServedPassageStates)."""
    if path == "unsplit":
        return lambda: graph_set.unsplit(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    if path == "passage_precompute":
        return lambda: graph_set.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    if path == "online_device_io":
        on_device = graph_set.on_device(passage_cache)  # once: a server keeps its cache on the device
        return lambda: graph_set.online_device_io(inputs["question_input_ids"], inputs["question_attention_mask"],
                                                  on_device, inputs["passage_attention_mask"])
    if path == MISS_PATH:  # lower_passage runs in the call, as it must when the cache lacks the passage
        return lambda: graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"],
                                        graph_set.lower_passage(inputs["passage_input_ids"],
                                                                inputs["passage_attention_mask"]),
                                        inputs["passage_attention_mask"])
    if path == SERVED_PATH:  # the gather from the memory-mapped file is part of every call
        return lambda: graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"],
                                        served.next_states(), inputs["passage_attention_mask"])
    return lambda: graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"], passage_cache,
                                    inputs["passage_attention_mask"])


def served_states(paths, passage_cache, min_mb, seed: int):
    """The memory-mapped cache file `online_served` reads, where `paths` time that path (else None)."""
    if SERVED_PATH not in paths:
        return None
    return ServedPassageStates(SERVED_CACHE_FILE, passage_cache, min_mb * 2**20, seed=seed)
