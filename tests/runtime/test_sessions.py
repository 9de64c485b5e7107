"""The paths over a graph set's sessions; IO binding and the read ahead give what plain runs give."""

import sys
import threading
import time

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.protocol import InputSpec
from deformer_bench.runtime.paths import make_inputs
from deformer_bench.runtime import sessions as sessions_module
from deformer_bench.runtime.helper_thread import helper_thread
from deformer_bench.runtime.sessions import READ_AHEAD_HELPER, GraphSetSessions, finish


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


def test_the_read_ahead_path_reads_the_passage_beside_lower_question(tiny_graphs, monkeypatch):
    """online_read_ahead: the passage's read on the helper thread while lower_question runs on this one (the read
    here waits until lower_question has run: it finishes only if the two overlap), the logits `online`'s."""
    sessions = GraphSetSessions(tiny_graphs, settings={"intra_op_threads": 1})
    inputs = make_inputs(InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1, vocab_size=120,
                                   seed=0))
    question = inputs["question_input_ids"], inputs["question_attention_mask"]
    states = sessions.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    plain = sessions.online(*question, states, inputs["passage_attention_mask"])
    lower_ran, read_on = threading.Event(), []
    lower_question = sessions.lower_question

    def lower_then_tell(*args):
        hidden = lower_question(*args)
        lower_ran.set()
        return hidden

    def read():
        read_on.append(threading.current_thread().name)
        assert lower_ran.wait(timeout=30), "lower_question did not run while the passage was read"
        return states

    monkeypatch.setattr(sessions, "lower_question", lower_then_tell)
    ahead = sessions.online_read_ahead(*question, read, inputs["passage_attention_mask"])
    assert read_on and read_on[0].startswith(READ_AHEAD_HELPER)
    for expected, got in zip(plain, ahead):
        np.testing.assert_array_equal(expected, got)


def test_the_read_ahead_path_raises_either_error_after_the_read(tiny_graphs):
    """A read's error reaches the caller; so does lower_question's, once the read has finished (nothing of the
    query is left running behind it)."""
    sessions = GraphSetSessions(tiny_graphs, settings={"intra_op_threads": 1})
    inputs = make_inputs(InputSpec(batch_size=1, question_len=8, passage_len=24, passage_token_type=1, vocab_size=120,
                                   seed=0))
    question = inputs["question_input_ids"], inputs["question_attention_mask"]

    def broken_read():
        raise PassageCacheError("segment 3 fails its sha256", "build the cache again")

    with pytest.raises(PassageCacheError, match="fails its sha256"):
        sessions.online_read_ahead(*question, broken_read, inputs["passage_attention_mask"])
    finished = []

    def slow_read():
        time.sleep(0.2)
        finished.append(True)
        return np.zeros((1, 24, 32), dtype=np.float32)

    with pytest.raises(Exception, match="Unexpected input data type"):  # onnxruntime's own type: float ids
        sessions.online_read_ahead(question[0].astype(np.float32), question[1], slow_read,
                                   inputs["passage_attention_mask"])
    assert finished == [True]
    with pytest.raises(Exception, match="Unexpected input data type") as both:  # the read's error kept as a note
        sessions.online_read_ahead(question[0].astype(np.float32), question[1], broken_read,
                                   inputs["passage_attention_mask"])
    if sys.version_info >= (3, 11):  # exceptions take notes from 3.11
        assert any("the passage read failed too: PassageCacheError" in note for note in both.value.__notes__)


def test_an_interrupt_while_waiting_for_the_read_is_raised_once_the_read_has_ended(monkeypatch):
    """Ctrl-C during the wait: whoever handles it (closing the cache, writing results) must not race the read."""
    started, release, ended = threading.Event(), threading.Event(), []

    def read():
        started.set()
        release.wait(timeout=30)
        ended.append(True)

    pending = helper_thread(READ_AHEAD_HELPER).submit(read)
    started.wait(timeout=30)
    real_wait, calls = sessions_module.wait, []

    def interrupted_wait(futures, timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            release.set()  # the read ends soon after the interrupt
            raise KeyboardInterrupt
        return real_wait(futures, timeout=timeout)

    monkeypatch.setattr(sessions_module, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        finish(pending)
    assert ended == [True] and calls == [None, sessions_module.INTERRUPTED_READ_WAIT_S]
