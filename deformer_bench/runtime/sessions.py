"""ONNX Runtime sessions of a graph set, and the three paths a DeFormer serves (numpy + onnxruntime only).

    unsplit        full.onnx on [question; passage]                        -> start, end logits [B, Lq+Lp]
    online         lower_question + passage states from a cache + upper    -> start, end logits [B, Lq+Lp]
    lower_passage  the offline half: passage states to cache               -> passage_hidden [B, Lp, H]

Session settings are a plain mapping (they travel in a runner's JSON job): provider, intra_op_threads,
inter_op_threads, allow_spinning, graph_optimization, and optional provider_options. A session that
onnxruntime runs on another provider than asked (it falls back to the CPU with only a warning) is refused:
its figures would be the CPU's under another device's name.
"""

import os

from .contract import GRAPHS

GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
# ONNX Runtime's defaults (threads = cores, sequential, every graph optimization) except spinning, which is
# off: sessions of a graph set run back to back, and a spinning pool holds the cores the next one needs.
DEFAULT_SETTINGS = {"provider": "CPUExecutionProvider", "intra_op_threads": 0, "inter_op_threads": 0,
                    "allow_spinning": False, "graph_optimization": "all"}


class ProviderFallback(RuntimeError):
    """ONNX Runtime runs a session on another execution provider than the one asked for."""


def open_session(path, settings: dict = None):
    """An InferenceSession of one graph, on exactly the provider asked for."""
    import onnxruntime

    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings["intra_op_threads"]
    options.inter_op_num_threads = settings["inter_op_threads"]
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel,
                                               GRAPH_OPTIMIZATION[settings["graph_optimization"]])
    spinning = "1" if settings["allow_spinning"] else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    provider = settings["provider"]
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=[(provider, settings.get("provider_options") or {})])
    used = session.get_providers()[0]
    if used != provider:
        raise ProviderFallback(f"{provider} was asked for {os.path.basename(str(path))} but onnxruntime "
                               f"{onnxruntime.__version__} runs it on {used} (available: "
                               f"{', '.join(onnxruntime.get_available_providers())})")
    return session


class GraphSetSessions:
    """Sessions of some graphs of one graph set (a directory of `<graph>.onnx`), and the paths over them."""

    def __init__(self, directory, graphs=tuple(GRAPHS), settings: dict = None):
        unknown = sorted(set(graphs) - set(GRAPHS))
        if unknown:
            raise KeyError(f"not graphs of the contract: {', '.join(unknown)}")
        self.sessions = {name: open_session(os.path.join(str(directory), GRAPHS[name].file_name), settings)
                         for name in graphs}

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
        question_hidden = self.run("lower_question", {"question_input_ids": question_input_ids,
                                                      "question_attention_mask": question_attention_mask})[0]
        return self.run("upper", {"question_hidden": question_hidden, "question_attention_mask": question_attention_mask,
                                  "passage_hidden": passage_hidden, "passage_attention_mask": passage_attention_mask})
