"""The systems under test, and what one query costs each: question text in, answer string out.

    unsplit        full.onnx over [question; window]
    deformer       lower_question, the window's passage states from a passage cache built beforehand
                   (`deformer-cache build`), upper; from a pq cache with a transform, the look-ups of the decode
                   only, its product run inside upper's graph (exporters/codec_upper.py). The cache is read on a
                   helper thread while lower_question runs (GraphSetSessions.online_read_ahead)
    deformer-miss  the same with an empty cache: every window runs lower_passage inside the query

Lengths. `fixed` feeds the graph set's lengths (question padded to question_len, every window to passage_len).
`real` pads only to the longest question and window of the batch (the graphs' axes are dynamic), keeping each
model's layout: the shipped models were trained with the passage's positions starting at question_len, after
the padded question.
- The DeFormer keeps it by construction: lower_passage gives the window positions question_len.. whatever the
  question (the cache holds them so), lower_question's positions start at 0, and upper takes no positions, so a
  shorter question moves nothing.
- full.onnx (optimum's export) takes no position ids: its positions run 0.. over [question; window], so a
  question cut shorter would move the passage to other positions (another model: the teacher loses ~4.4 F1).
  The unsplit system therefore keeps the question part padded to question_len and trims the window only.
Either way the logits are put back at the graph set's coordinates, and the project's post-processing
(squad.postprocess) turns them into answers; a test checks that both modes give the same logits.
"""

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts.errors import ManifestError, first_line
from ..exporters.codec_upper import product_graph
from ..runtime.sessions import GraphSetSessions, open_session
from ..serving import passage_states
from ..squad.features import featurize
from ..squad.postprocess import predictions_from_logits

KINDS = ("unsplit", "deformer", "deformer-miss")
LENGTH_MODES = ("real", "fixed")
# The graphs each kind's query runs.
KIND_GRAPHS = {"unsplit": ("full",), "deformer": ("lower_question", "upper"),
               "deformer-miss": ("lower_question", "lower_passage", "upper")}
DOC_STRIDE = 128  # the windows' overlap in training, evaluation and the caches deformer-cache builds by default


@dataclass(frozen=True)
class SystemSpec:
    kind: str
    graphs: Path  # the graph set directory (deformer-export's OUT/)
    variant: str = "float32"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.variant}"

    @property
    def parent(self) -> "SystemSpec":
        """The float32 system every variant is shown against."""
        return dataclasses.replace(self, variant="float32")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    def record(self) -> dict:
        return {"kind": self.kind, "variant": self.variant, "graphs": str(self.graphs), "label": self.label,
                "parent": self.parent.label}


def batch_widths(features, lengths: str, keep_question: bool) -> tuple:
    """(question width, passage width) a batch is fed at: the graph set's lengths (`fixed`), or the longest
    question and window of the batch (`real`; `keep_question`: the question part stays at question_len)."""
    question_len, passage_len = features.question_input_ids.shape[1], features.passage_input_ids.shape[1]
    if lengths == "fixed":
        return question_len, passage_len
    if lengths != "real":
        raise ValueError(f"lengths must be one of {LENGTH_MODES}, got {lengths!r}")
    question = question_len if keep_question else int(features.question_attention_mask.sum(axis=1).max())
    return question, int(features.passage_attention_mask.sum(axis=1).max())


def to_graph_set_layout(logits, question_width: int, question_len: int, passage_len: int) -> np.ndarray:
    """[B, q + p] logits of a batch fed at real lengths -> [B, question_len + passage_len] at the graph set's
    coordinates (passage token j at question_len + j), where the post-processing reads them. Positions the batch
    did not feed are -inf: padding, never a span."""
    if logits.shape[1] == question_len + passage_len:
        return logits
    out = np.full((logits.shape[0], question_len + passage_len), -np.inf, dtype=np.float32)
    out[:, :question_width] = logits[:, :question_width]
    passage_width = logits.shape[1] - question_width
    out[:, question_len:question_len + passage_width] = logits[:, question_width:]
    return out


class QuestionAnswerer:
    """One system, ready to serve: the tokenizer, the graphs' sessions and (deformer) its passage cache."""

    def __init__(self, spec: SystemSpec, graph_set, tokenizer, session_settings: dict, cache=None,
                 doc_stride: int = DOC_STRIDE):
        self.spec, self.graph_set, self.tokenizer, self.cache, self.doc_stride = (spec, graph_set, tokenizer, cache,
                                                                                   doc_stride)
        self.session_settings = session_settings
        deformer = graph_set.deformer
        self.question_len, self.passage_len = deformer.question_len, deformer.passage_len
        self.passage_token_type = deformer.passage_token_type
        try:
            self.sessions = GraphSetSessions(graph_set.directory, KIND_GRAPHS[spec.kind], session_settings)
        except Exception as error:  # onnxruntime's own types (InvalidProtobuf, Fail, ...), a provider fallback
            raise ManifestError(f"graph set {graph_set.directory} cannot be loaded by onnxruntime: "
                                f"{first_line(error)}", "export the graph set again, or check the device") from None
        self.lower_passage_session = None  # a deformer's cache miss opens it (none is expected: see run.py)
        self.cache_misses = 0
        self.coded_upper = self._coded_upper()

    def _coded_upper(self):
        """A deformer served from a pq cache with a transform: upper with the codec's product inside
        (exporters/codec_upper.py), so that only the look-ups of the decode run in numpy; else None."""
        if self.spec.kind != "deformer" or self.cache is None:
            return None
        graph = product_graph(self.graph_set.path("upper"), self.cache.graph_product)  # a clear error if damaged
        if graph is None:  # no product (rq, binary, plain pq), or the ORT format, which onnx cannot edit
            return None
        try:
            return open_session(graph, self.session_settings)
        except Exception as error:  # onnxruntime's own types, a provider fallback
            raise ManifestError(f"upper of {self.graph_set.directory} with the cache's product inside cannot be "
                                f"loaded by onnxruntime: {first_line(error)}", "check the device") from None

    def answer(self, examples, lengths: str) -> list:
        """The answer strings of `examples` (a batch; the same question may come twice), one query's whole work."""
        features = featurize(examples, self.tokenizer, self.question_len, self.passage_len, self.doc_stride,
                             progress=False)
        start, end = self.logits(features, lengths)
        predictions = predictions_from_logits(examples, features, start, end, self.question_len)
        return [predictions[example.id] for example in examples]

    def logits(self, features, lengths: str) -> tuple:
        """Start and end logits [N, question_len + passage_len] of every window of a batch."""
        question_width, passage_width = batch_widths(features, lengths, keep_question=self.spec.kind == "unsplit")
        passage_ids = features.passage_input_ids[:, :passage_width]
        passage_mask = features.passage_attention_mask[:, :passage_width]
        if self.spec.kind == "unsplit":
            fed = dataclasses.replace(features, passage_input_ids=passage_ids, passage_attention_mask=passage_mask)
            start, end = self.sessions.unsplit(**fed.unsplit_inputs(self.passage_token_type))
        else:
            question = (features.question_input_ids[:, :question_width],
                        features.question_attention_mask[:, :question_width])
            start, end = self.deformer_logits(features, question, passage_width, passage_mask)
        return tuple(to_graph_set_layout(logits, question_width, self.question_len, self.passage_len)
                     for logits in (start, end))

    def deformer_logits(self, features, question: tuple, passage_width: int, passage_mask) -> tuple:
        """A deformer's start and end logits. Where the cache holds every window of the batch, their read (the
        states, or the coefficients for coded_upper) runs beside lower_question (online_read_ahead), as a server
        would run it; a batch with a cache miss, and the deformer-miss, run lower_passage first, then the rest."""
        rows = None
        if self.spec.kind == "deformer":
            rows = self.cache.lookup(features.passage_input_ids, features.passage_attention_mask)
            if (rows >= 0).all():
                if self.coded_upper is not None:
                    return self.sessions.online_read_ahead(
                        *question, lambda: self.cache.passage_coefficients(rows, passage_width), passage_mask,
                        self.coded_upper)
                return self.sessions.online_read_ahead(
                    *question, lambda: self.passage_states(features, passage_width, rows), passage_mask)
        return self.sessions.online(*question, self.passage_states(features, passage_width, rows), passage_mask)

    def passage_states(self, features, passage_width: int, rows=None) -> np.ndarray:
        """[N, passage_width, H]: the deformer's from its cache (keyed by the whole padded window, as built: `rows`,
        its lookup, where done already), the deformer-miss's from lower_passage run now on the window at the width
        fed."""
        if self.spec.kind == "deformer-miss":
            return self.sessions.lower_passage(features.passage_input_ids[:, :passage_width],
                                               features.passage_attention_mask[:, :passage_width])
        if rows is None:
            rows = self.cache.lookup(features.passage_input_ids, features.passage_attention_mask)
        missed = rows < 0
        if missed.any():
            self.cache_misses += int(missed.sum())
            if self.lower_passage_session is None:
                self.lower_passage_session = open_session(self.graph_set.path("lower_passage"), self.session_settings)
        # the fed width only: nothing past it read or decoded
        return passage_states(self.cache, rows, missed, self.lower_passage_session, features.passage_input_ids,
                              features.passage_attention_mask, passage_width)
