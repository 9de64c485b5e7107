"""One helper thread per purpose and process, for query-path work that runs beside this thread's: half of a
codec's product (codec_decode.decode_product), a passage's read while the question's lower layers run
(sessions.GraphSetSessions.online_read_ahead). Each is one thread that sleeps, not spins, between calls, made on
first use; a forked child gets its own (a fork copies an executor, not its thread: work handed to the copy would
wait forever). One thread serves every caller of a purpose: two threads serving queries at once would have their
reads run one after the other (the scenario benchmark's SUT has one worker thread)."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_HELPERS = {}  # purpose -> (pid, executor)
_MAKING = threading.Lock()  # two first uses at once make one executor, not two


def helper_thread(purpose: str) -> ThreadPoolExecutor:
    """The executor of `purpose`'s helper thread in this process (its thread is named after the purpose)."""
    with _MAKING:
        made = _HELPERS.get(purpose)
        if made is None or made[0] != os.getpid():
            made = _HELPERS[purpose] = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix=purpose))
        return made[1]
