"""ONNX Runtime sessions of a graph set, and the three paths a DeFormer serves (numpy + onnxruntime only).

    unsplit           full.onnx on [question; passage]                      -> start, end logits [B, Lq+Lp]
    online            lower_question + passage states from a cache + upper  -> start, end logits [B, Lq+Lp]
    online_device_io  the same with IO binding: the cached passage states and the question's hidden states stay
                      on the device (a GPU server holds its cache there); only ids in and logits out cross
    online_coded      online from a pq cache's coefficients (its decode's look-ups), upper with the codec's
                      product inside (exporters/codec_upper.py) given as a session -> start, end logits
    online_read_ahead online or online_coded with the passage's read (the cache's gather and decode) run on a
                      helper thread while lower_question runs: what a server does, the two being independent
    lower_passage     the offline half: passage states to cache             -> passage_hidden [B, Lp, H]

Session settings are a plain mapping (they travel in a runner's JSON job): provider, intra_op_threads,
inter_op_threads, allow_spinning, graph_optimization, and optional provider_options. A session that
onnxruntime runs on another provider than asked (it falls back to the CPU with only a warning) is refused:
its figures would be the CPU's under another device's name.
"""

import os
from concurrent.futures import wait

from ..contracts.graphs import GRAPHS
from .helper_thread import helper_thread

READ_AHEAD_HELPER = "passage-read"  # the helper thread (runtime.helper_thread) that reads a passage ahead
# After an interrupt, how long a query still waits for its passage read (milliseconds, as a rule) before it lets the
# interrupt through with the read running on: a read blocked on a stalled disk must not make Ctrl-C useless.
INTERRUPTED_READ_WAIT_S = 10.0


def finish(pending) -> None:
    """Wait for a read ahead (a Future) to end. An interrupt (KeyboardInterrupt, SystemExit) during the wait is held
    until the read has ended, or INTERRUPTED_READ_WAIT_S more have passed, then raised: so that whoever handles it
    (closing the cache, writing what was measured) does not race a read still running on the helper thread."""
    try:
        wait([pending])
    except BaseException:
        wait([pending], timeout=INTERRUPTED_READ_WAIT_S)
        raise

GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
# The one set of session defaults (the benchmark's profiles override them; serving, evaluation and the passage
# cache's builds use them): ONNX Runtime's own (threads = cores, sequential, every graph optimization) except
# spinning, which is off. Sessions of a graph set run back to back, and a spinning pool holds the cores the next
# one (or a training run beside it) needs: at batch 1 the bench measured ORT's default spinning doubling the
# latency of back-to-back sessions (results/settings); at evaluation's batch 64 beside a training run spinning
# saved only ~3% (4 batches: 22.3-23.0 s vs 23.3-23.7 s).
DEFAULT_SETTINGS = {"provider": "CPUExecutionProvider", "intra_op_threads": 0, "inter_op_threads": 0,
                    "allow_spinning": False, "graph_optimization": "all"}


# The device an execution provider's tensors live on, as OrtValue and IO binding name it.
PROVIDER_DEVICES = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
                    "ROCMExecutionProvider": "cuda"}


class ProviderFallback(RuntimeError):
    """ONNX Runtime runs a session on another execution provider than the one asked for."""


def open_session(path, settings: dict = None, profile_prefix: str = None):
    """An InferenceSession of one graph (a file, or a serialized ModelProto's bytes), on exactly the provider asked
    for (with onnxruntime's profiler on, its trace file starting with `profile_prefix`, where given)."""
    import onnxruntime

    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    options = onnxruntime.SessionOptions()
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = settings["intra_op_threads"]
    options.inter_op_num_threads = settings["inter_op_threads"]
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel,
                                               GRAPH_OPTIMIZATION[settings["graph_optimization"]])
    spinning = "1" if settings["allow_spinning"] else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    provider = settings["provider"]
    in_memory = isinstance(path, bytes)
    session = onnxruntime.InferenceSession(path if in_memory else str(path), options,
                                           providers=[(provider, settings.get("provider_options") or {})])
    used = session.get_providers()[0]
    if used != provider:
        name = "a graph made in memory" if in_memory else os.path.basename(str(path))
        raise ProviderFallback(f"{provider} was asked for {name} but onnxruntime "
                               f"{onnxruntime.__version__} runs it on {used} (available: "
                               f"{', '.join(onnxruntime.get_available_providers())})")
    return session


def graph_path(directory, name: str) -> str:
    """`<name>.onnx`, or where a graph set holds the ORT format instead, `<name>.ort`."""
    onnx_path = os.path.join(str(directory), GRAPHS[name].file_name)
    ort_path = os.path.join(str(directory), GRAPHS[name].ort_file_name)
    return ort_path if not os.path.exists(onnx_path) and os.path.exists(ort_path) else onnx_path


class GraphSetSessions:
    """Sessions of some graphs of one graph set (a directory of `<graph>.onnx`), and the paths over them."""

    def __init__(self, directory, graphs=tuple(GRAPHS), settings: dict = None):
        unknown = sorted(set(graphs) - set(GRAPHS))
        if unknown:
            raise KeyError(f"not graphs of the contract: {', '.join(unknown)}")
        self.sessions = {name: open_session(graph_path(directory, name), settings) for name in graphs}
        self.device = PROVIDER_DEVICES.get({**DEFAULT_SETTINGS, **(settings or {})}["provider"], "cpu")

    def providers_used(self) -> dict:
        """{graph: the execution provider its session runs on}."""
        return {name: session.get_providers()[0] for name, session in self.sessions.items()}

    def provider_options_used(self) -> dict:
        """The options of the provider asked for as onnxruntime applied them (defaults filled in, e.g. CUDA's
        use_tf32), from the first session."""
        session = next(iter(self.sessions.values()))
        return session.get_provider_options().get(session.get_providers()[0], {})

    def run(self, graph: str, feed: dict) -> list:
        """One graph on `feed` (every input of the contract, by name); its outputs in contract order."""
        spec = GRAPHS[graph]
        return self.sessions[graph].run(list(spec.outputs), {name: feed[name] for name in spec.inputs})

    def unsplit(self, input_ids, attention_mask, token_type_ids):
        return self.run("full", {"input_ids": input_ids, "attention_mask": attention_mask,
                                 "token_type_ids": token_type_ids})

    def lower_passage(self, passage_input_ids, passage_attention_mask):
        return self.run("lower_passage", {"passage_input_ids": passage_input_ids,
                                          "passage_attention_mask": passage_attention_mask})[0]

    def online(self, question_input_ids, question_attention_mask, passage_hidden, passage_attention_mask):
        """The serving path: the question through lower_question, then upper with cached passage states."""
        question_hidden = self.lower_question(question_input_ids, question_attention_mask)
        return self.upper(question_hidden, question_attention_mask, passage_hidden, passage_attention_mask)

    def online_coded(self, question_input_ids, question_attention_mask, passage_coefficients, passage_attention_mask,
                     coded_upper):
        """`online` from a pq cache's coefficients [B, Lp, K] (the look-ups of its decode): `coded_upper`, a session
        of upper with the product inside (exporters/codec_upper.py), computes the states from them."""
        question_hidden = self.lower_question(question_input_ids, question_attention_mask)
        return self.upper(question_hidden, question_attention_mask, passage_coefficients, passage_attention_mask,
                          coded_upper)

    def online_read_ahead(self, question_input_ids, question_attention_mask, read_passage, passage_attention_mask,
                          coded_upper=None):
        """`online` (or, given `coded_upper`, `online_coded`) with the passage read beside the question's lower
        layers: read_passage() gives the states [B, P, H] (the coefficients [B, P, K] for coded_upper; P the passage
        width fed) on a helper thread while lower_question runs on this one. The two are independent; the read (a
        cache's gather, a codec's look-ups: numpy calls, each slow right after a graph run, its caches cold) costs
        several times its warm time, while lower_question at a question's length leaves the cores part idle: at
        batch 1 and real lengths, a pq m=92 fisher window's read with the product in upper added ~780-840 us to a
        ~14.5 ms question read first, ~420-470 us read beside (results/passage-cache/codecs, "The read beside the
        question"). Nothing of the call runs on after it
        returns or raises (after an interrupt, a read still running gets INTERRUPTED_READ_WAIT_S to end: finish):
        an error of lower_question's is raised once the read has ended (the read's own error, if it failed too,
        noted on it), and the read's error otherwise."""
        pending = helper_thread(READ_AHEAD_HELPER).submit(read_passage)
        try:
            question_hidden = self.lower_question(question_input_ids, question_attention_mask)
        except BaseException as error:
            finish(pending)
            read_error = None if pending.cancelled() else pending.exception()
            if read_error is not None and hasattr(error, "add_note"):  # add_note: Python 3.11 and later
                error.add_note(f"the passage read failed too: {type(read_error).__name__}: {read_error}")
            raise
        finish(pending)
        return self.upper(question_hidden, question_attention_mask, pending.result(), passage_attention_mask,
                          coded_upper)

    def lower_question(self, question_input_ids, question_attention_mask):
        """question_hidden [B, Lq, H]: the question through the lower layers."""
        return self.run("lower_question", {"question_input_ids": question_input_ids,
                                           "question_attention_mask": question_attention_mask})[0]

    def upper(self, question_hidden, question_attention_mask, passage_input, passage_attention_mask,
              coded_upper=None):
        """start, end logits: upper on the question's hidden states and the passage's `passage_input`: its states
        [B, P, H], or, given `coded_upper`, its coefficients [B, P, K]."""
        if coded_upper is None:
            return self.run("upper", {"question_hidden": question_hidden,
                                      "question_attention_mask": question_attention_mask,
                                      "passage_hidden": passage_input,
                                      "passage_attention_mask": passage_attention_mask})
        return coded_upper.run(list(GRAPHS["upper"].outputs), {
            "question_hidden": question_hidden, "question_attention_mask": question_attention_mask,
            "passage_coefficients": passage_input, "passage_attention_mask": passage_attention_mask})

    def on_device(self, array):
        """An array copied once to the sessions' device (an OrtValue), e.g. the cached passage states."""
        import onnxruntime

        return onnxruntime.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def online_device_io(self, question_input_ids, question_attention_mask, passage_hidden_on_device,
                         passage_attention_mask):
        """`online` through IO binding: passage states already on the device (see on_device), the question's
        hidden states handed from lower_question to upper without leaving it; logits copied out."""
        lower = self.sessions["lower_question"].io_binding()
        lower.bind_cpu_input("question_input_ids", question_input_ids)
        lower.bind_cpu_input("question_attention_mask", question_attention_mask)
        lower.bind_output("question_hidden", self.device)
        self.sessions["lower_question"].run_with_iobinding(lower)
        upper = self.sessions["upper"].io_binding()
        upper.bind_ortvalue_input("question_hidden", lower.get_outputs()[0])
        upper.bind_cpu_input("question_attention_mask", question_attention_mask)
        upper.bind_ortvalue_input("passage_hidden", passage_hidden_on_device)
        upper.bind_cpu_input("passage_attention_mask", passage_attention_mask)
        for name in GRAPHS["upper"].outputs:
            upper.bind_output(name, "cpu")
        self.sessions["upper"].run_with_iobinding(upper)
        return upper.copy_outputs_to_cpu()
