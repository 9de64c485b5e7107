import psutil

from deformer_bench.bench import machine_state
from deformer_bench.bench.machine_state import busy_processes, machine_state_record, state_warnings


class FakeProcess:
    """A psutil.Process stand-in: cpu_percent says 0 on the first call (as psutil does), then `percent`."""

    def __init__(self, pid, name, percent, fails=False):
        self.pid, self.info, self.percent, self.fails, self.calls = pid, {"pid": pid, "name": name}, percent, fails, 0

    def cpu_percent(self, interval=None):
        self.calls += 1
        if self.fails and self.calls > 1:
            raise psutil.NoSuchProcess(self.pid)
        return 0.0 if self.calls == 1 else self.percent


def sample(processes, exclude=()):
    slept = []
    found = busy_processes(sample_s=0.5, sleep=slept.append, process_iter=lambda attrs: processes,
                           exclude=set(exclude))
    return found, slept


def test_busy_processes_are_the_others_above_the_threshold_busiest_first():
    processes = [FakeProcess(1, "idle", 0.5), FakeProcess(2, "trainer", 95.0), FakeProcess(3, "ours", 200.0),
                 FakeProcess(4, "gone", 80.0, fails=True), FakeProcess(5, "browser", 12.0)]
    found, slept = sample(processes, exclude={3})
    assert found == [{"pid": 2, "name": "trainer", "cpu_percent": 95.0},
                     {"pid": 5, "name": "browser", "cpu_percent": 12.0}]
    assert slept == [0.5]  # one sample of all processes together, not one per process


def test_our_own_work_is_this_process_and_its_children():
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert {psutil.Process().pid, child.pid} <= machine_state.own_pids(psutil)
    finally:
        child.kill()
        child.wait()


def test_a_quiet_machine_gives_no_warning():
    start = {"load_average": [0.4, 0.3, 0.2], "busy_processes": []}
    end = {"load_average": [2.0, 1.0, 0.5], "busy_processes": []}  # the end's load is the benchmark's own
    record = machine_state_record(start, end, cores=2)
    assert record["quiet"] and record["warnings"] == [] and record["logical_cores"] == 2
    assert record["at_start"] is start and record["thresholds"]["load_per_core"] == 0.5


def test_load_above_half_the_cores_at_the_start_is_not_quiet():
    [warning] = state_warnings({"load_average": [1.5, 1.0, 0.5], "busy_processes": []}, None, cores=2)
    assert "not quiet at the start" in warning and "1.50 on 2 logical cores" in warning


def test_another_busy_process_at_either_end_is_not_quiet():
    busy = [{"pid": 7, "name": "trainer", "cpu_percent": 97.0}]
    record = machine_state_record({"load_average": [0.1, 0.1, 0.1], "busy_processes": []},
                                  {"load_average": [0.1, 0.1, 0.1], "busy_processes": busy}, cores=4)
    assert not record["quiet"]
    assert record["warnings"] == ["machine not quiet at the end: other processes used the CPU: "
                                  "trainer (pid 7) 97% CPU"]


def test_no_load_average_on_this_platform_is_recorded_as_none(monkeypatch):
    def missing():
        raise OSError("no load average")

    monkeypatch.setattr(machine_state.os, "getloadavg", missing)
    state = machine_state.snapshot(sample_s=0.0, sleep=lambda seconds: None, process_iter=lambda attrs: [])
    assert state["load_average"] is None and state["busy_processes"] == []
    assert state_warnings(state, state, cores=2) == []
