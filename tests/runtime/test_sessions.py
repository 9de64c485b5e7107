"""The paths over a graph set's sessions; IO binding gives what plain runs give."""

import numpy as np

from deformer_bench.contracts.protocol import InputSpec
from deformer_bench.runtime.paths import make_inputs
from deformer_bench.runtime.sessions import GraphSetSessions


def test_the_device_io_online_path_equals_the_host_io_one(tiny_graphs):
    sessions = GraphSetSessions(tiny_graphs, settings={"intra_op_threads": 1})
    inputs = make_inputs(InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1, vocab_size=120,
                                   seed=0))
    cache = sessions.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    plain = sessions.online(inputs["question_input_ids"], inputs["question_attention_mask"], cache,
                            inputs["passage_attention_mask"])
    bound = sessions.online_device_io(inputs["question_input_ids"], inputs["question_attention_mask"],
                                      sessions.on_device(cache), inputs["passage_attention_mask"])
    assert sessions.device == "cpu"
    for expected, got in zip(plain, bound):
        np.testing.assert_array_equal(expected, got)
    assert set(sessions.providers_used().values()) == {"CPUExecutionProvider"}
    assert isinstance(sessions.provider_options_used(), dict)
