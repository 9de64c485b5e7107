"""One build at a time per cache directory: the build's lock file, and whether a build holds it (a reader then sees
segments that build has not listed yet: store.check_listing)."""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ..contracts.errors import PassageCacheError

LOCK_FILE = ".build.lock"


class BuildLocked(PassageCacheError):
    """Another build holds the cache directory's lock."""


@contextmanager
def build_lock(directory: Path):
    """One build at a time per cache directory (a second one would list the same segment names twice). The lock
    file goes when the build ends, however it ends: removed while still held, and a build that locked a file
    already removed (it opened it just before) tries again on the one now there, so two builds never hold two
    files at once."""
    path = directory / LOCK_FILE
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise BuildLocked(f"another build is writing {directory}", "wait for it to finish") from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()  # locked a removed file: the build that held it has ended
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            handle.close()


def build_running(directory: Path) -> bool:
    """True while a build holds `directory`'s lock (a reader then sees segments it has not listed yet)."""
    try:
        handle = open(Path(directory) / LOCK_FILE, "rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
