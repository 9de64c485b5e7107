"""The query path's helper threads: one per purpose and process, named after it, made again in a forked child."""

import os
import signal
import threading
import time

import pytest

from deformer_bench.runtime import helper_thread


def test_one_helper_thread_per_purpose_named_after_it():
    read = helper_thread.helper_thread("test-read")
    assert helper_thread.helper_thread("test-read") is read
    assert helper_thread.helper_thread("test-other") is not read
    assert read.submit(lambda: threading.current_thread().name).result().startswith("test-read")


def test_a_forked_child_gets_helper_threads_of_its_own(monkeypatch):
    """A fork copies the executor, not its thread: the copy would take work and never run it."""
    parent = helper_thread.helper_thread("test-fork")
    monkeypatch.setattr(helper_thread.os, "getpid", lambda: -1)  # as seen from a child
    child = helper_thread.helper_thread("test-fork")
    assert child is not parent and child.submit(lambda: 7).result(timeout=30) == 7


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_real_fork_runs_work_on_its_helper_thread():
    helper_thread.helper_thread("test-real-fork").submit(lambda: None).result()  # the parent's thread exists
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its helper must run what it is handed; it never returns into pytest
        try:
            value = helper_thread.helper_thread("test-real-fork").submit(lambda: b"ran").result(timeout=20)
            os.write(writer, value)
        finally:
            os._exit(0)
    os.close(writer)
    try:
        deadline = time.monotonic() + 60
        while os.waitpid(pid, os.WNOHANG) == (0, 0):  # a child stuck before its timeout must not hang the suite
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child did not finish in 60 s")
            time.sleep(0.05)
        assert os.read(reader, 16) == b"ran"
    finally:
        os.close(reader)
