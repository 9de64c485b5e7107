"""The measured paths over a graph set's sessions, on inputs made from a seed: what the runner times and checks,
what the host computes its parity reference with, and what an exported variant is validated on."""

import numpy as np

from ..contracts.protocol import (CODEC_SERVED_PATH, MISS_PATH, SERVED_CACHE_FILE, SERVED_CODES_PREFIX, SERVED_PATH,
                                  InputSpec)
from .cached_states import ServedPassageCodes, ServedPassageStates
from .codec_decode import make_decoder
from .sessions import open_session


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
    """A no-argument function that runs one path once on a GraphSetSessions (`served`: {served path: what serves its
    states}, served_sources)."""
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
    if path == CODEC_SERVED_PATH and served[path].upper is not None:  # pq: the look-ups here, the product in upper
        source = served[path]
        return lambda: graph_set.online_coded(inputs["question_input_ids"], inputs["question_attention_mask"],
                                              source.next_states(), inputs["passage_attention_mask"], source.upper)
    if path in (SERVED_PATH, CODEC_SERVED_PATH):  # the gather from the mapped file (and decode) is in every call
        source = served[path]
        return lambda: graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"],
                                        source.next_states(), inputs["passage_attention_mask"])
    return lambda: graph_set.online(inputs["question_input_ids"], inputs["question_attention_mask"], passage_cache,
                                    inputs["passage_attention_mask"])


def served_sources(paths, passage_cache, min_mb, seed: int, served_codec: dict = None,
                   settings: dict = None) -> dict:
    """{path: what serves its passage states} for the served paths among `paths`: online_served's memory-mapped file
    of the float32 states, online_served_codec's files of a learned codec's codes (`served_codec`: a timing job's;
    `settings`: the sessions', for the upper graph it may stage)."""
    sources = {}
    if SERVED_PATH in paths:
        sources[SERVED_PATH] = ServedPassageStates(SERVED_CACHE_FILE, passage_cache, min_mb * 2**20, seed=seed)
    if CODEC_SERVED_PATH in paths:
        sources[CODEC_SERVED_PATH] = served_codes(served_codec, len(passage_cache), min_mb * 2**20, seed, settings)
    return sources


def served_codes(served_codec: dict, batch: int, min_bytes: int, seed: int,
                 settings: dict = None) -> ServedPassageCodes:
    """A batch of `batch` windows' codes (the staged windows in order, again from the first where there are fewer)
    served and decoded with the staged codebook; where the job stages an upper graph with pq's product inside
    (served_codec's "upper_file"), only the look-ups run here and that graph takes their coefficients."""
    with np.load(served_codec["codebook_file"], allow_pickle=False) as staged:
        codebook = {name: staged[name] for name in staged.files}
    with np.load(served_codec["codes_file"], allow_pickle=False) as staged:
        codes = {name: staged[name] for name in staged.files}
    rows = np.arange(batch) % len(next(iter(codes.values())))
    decoder = make_decoder(served_codec["name"], served_codec["settings"], codebook)
    upper = open_session(served_codec["upper_file"], settings) if served_codec.get("upper_file") else None
    return ServedPassageCodes({name: f"{SERVED_CODES_PREFIX}{name}.npy" for name in codes},
                              {name: array[rows] for name, array in codes.items()}, decoder, min_bytes, seed, upper)
