"""The watch a local Ray build starts beside itself, so that a killed build (kill -9, the OOM killer) leaves no
Ray process running and no Ray folder behind.

Ray ties the processes it starts to the driver (Linux: PR_SET_PDEATHSIG), but not the agents its raylet starts
(ray::DashboardAgent, ray::RuntimeEnvAgent: Ray 2.60 always starts both): when the raylet is killed with the
driver, each agent spends 60 s trying to tell the dead GCS so before it exits. This watch reads its standard input,
a pipe from the build, until end of file: the build closed it (its `finally`, after ray.shutdown), or the build
is gone and the kernel closed it. Then it kills every process whose environment holds the build's marker (every
Ray process the build started inherits it) or that has a file open in the build's Ray folder, and, when the build did not say "done" first, removes the build's Ray
folder. Interrupts and SIGTERM sent to the build's process group (Ctrl-C, a job scheduler) are ignored here: the
build itself handles them, then closes the pipe.

Standard library only, run as a script (`python -I ray_reaper.py MARKER FOLDER BUILD_PID`): nothing of the package is
imported, so it starts in milliseconds.
"""

import os
import shutil
import signal
import sys
import time

DONE = b"done\n"


def holds_marker(pid: str, marker: bytes) -> bool:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        return marker in handle.read().split(b"\0")


def has_open_under(pid: str, folder: str) -> bool:
    """True when the process has a file open in `folder` (its logs): how Ray's agents are told, whose environment
    the title they set for themselves (ray::DashboardAgent) overwrites."""
    for descriptor in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}").startswith(folder + os.sep):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def build_processes(marker: bytes, folder: str, spared: int) -> list:
    """Ids of this user's processes, but `spared`, whose environment holds `marker` (NAME=VALUE) or that have a
    file open in `folder`; Linux's /proc only."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) in (os.getpid(), spared):
            continue
        try:
            if holds_marker(entry, marker) or has_open_under(entry, folder):
                found.append(int(entry))
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def kill_build_processes(marker: bytes, folder: str, spared: int) -> None:
    for _ in range(10):  # a process may start another while the first pass runs
        pids = build_processes(marker, folder, spared)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def main(argv) -> None:
    marker, folder, build = argv[0].encode(), os.path.realpath(argv[1]), int(argv[2])
    for interrupt in (signal.SIGINT, signal.SIGTERM):
        signal.signal(interrupt, signal.SIG_IGN)
    told = b""
    while chunk := sys.stdin.buffer.read(64):
        told = (told + chunk)[-len(DONE):]
    kill_build_processes(marker, folder, spared=build)
    if told != DONE:  # the build is gone: nobody else removes its Ray folder now
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
