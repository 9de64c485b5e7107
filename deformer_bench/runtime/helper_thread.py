"""One helper thread per purpose and process, for query-path work that runs beside this thread's: half of a
codec's product (codec_decode.decode_product), a passage's read while the question's lower layers run
(sessions.GraphSetSessions.online_read_ahead). Each is one thread that sleeps, not spins, between calls, made on
first use; a forked child gets its own (a fork copies an executor, not its thread: work handed to the copy would
wait forever)."""

import os
from concurrent.futures import ThreadPoolExecutor

_HELPERS = {}  # purpose -> (pid, executor)


def helper_thread(purpose: str) -> ThreadPoolExecutor:
    """The executor of `purpose`'s helper thread in this process (its thread is named after the purpose)."""
    made = _HELPERS.get(purpose)
    if made is None or made[0] != os.getpid():
        made = _HELPERS[purpose] = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix=purpose))
    return made[1]
