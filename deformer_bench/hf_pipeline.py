"""A trained unsplit model of this project through transformers' question-answering pipeline, at its own F1.

The models here (reference/teacher/model, any k=0 DeFormer directory) were trained in the DeFormer layout: the
question `[CLS] q [SEP]` padded to `question_len` tokens, then a passage window `p [SEP]` of `passage_len`
tokens whose positions start at `passage_first_position` (32 for the teacher: right after the padded question),
windows cut from the passage alone with the training's doc stride. transformers' own
`pipeline("question-answering")` packs the passage right after the question's [SEP], in windows of 384 tokens,
and picks spans by softmax score up to 15 tokens long: the reference teacher scores F1 73.2 there on the first
300 SQuAD dev questions, 77.6 in its own layout (reference/README.md).

    from deformer_bench.hf_pipeline import deformer_qa_pipeline
    qa = deformer_qa_pipeline("reference/teacher/model")
    qa(question="Which NFL team won Super Bowl 50?", context="...")  # {"answer", "score", "start", "end"}

DeformerQuestionAnsweringPipeline is a QuestionAnsweringPipeline whose windows are the project's own
(squad.features.featurize), whose inputs carry the layout's position ids, and whose spans are chosen as
deformer-eval chooses them (the best start + end logit across the windows, at most 30 tokens): the model is
transformers' own `...ForQuestionAnswering`, and its answers are deformer-eval's (tests/test_hf_pipeline.py
checks this on the real teacher). A k>0 model is refused: its lower layers see question and passage apart, which
no single transformers forward pass computes (Deformer.from_pretrained and deformer-eval run it).
"""

from pathlib import Path

import numpy as np
import torch
from transformers import QuestionAnsweringPipeline

from .architectures import architecture_for
from .errors import ConfigError
from .squad.data import Example
from .squad.features import featurize
from .squad.postprocess import MAX_ANSWER_TOKENS, best_span

# What the pipeline's own options set that the layout fixes: refused rather than silently ignored.
FIXED_BY_THE_LAYOUT = ("padding", "max_seq_len", "max_question_len", "handle_impossible_answer", "align_to_words",
                       "topk")


def layout_position_ids(deformer_config, hf_config) -> torch.Tensor:
    """[1, Lq + Lp] position ids of [question; passage window] in the DeFormer layout: the question's from the
    family's first position, the passage's from the offset (deformer.json's passage_position_offset)."""
    first = architecture_for(hf_config.model_type).first_position(hf_config)
    question = torch.arange(deformer_config.question_len)
    passage = deformer_config.passage_first_position() + torch.arange(deformer_config.passage_len)
    return (first + torch.cat([question, passage])).unsqueeze(0)


class DeformerQuestionAnsweringPipeline(QuestionAnsweringPipeline):
    """transformers' question-answering pipeline in the DeFormer layout of `deformer_config` (a DeformerConfig
    with layer 0). Options: doc_stride (default 128, as in training), max_answer_len (tokens, default 30, as
    deformer-eval); top_k 1 only."""

    def __init__(self, model, tokenizer, deformer_config, **kwargs):
        if deformer_config.layer != 0:
            raise ConfigError(f"a k={deformer_config.layer} DeFormer runs its first {deformer_config.layer} layers on "
                              "question and passage apart, which no transformers forward pass does",
                              "run it with deformer-eval or Deformer.from_pretrained; this pipeline takes k=0 models")
        self.deformer_config = deformer_config
        super().__init__(model=model, tokenizer=tokenizer, **kwargs)
        self.position_ids = layout_position_ids(deformer_config, model.config)
        self.passage_token_type = architecture_for(model.config.model_type).passage_token_type(model.config)

    def _sanitize_parameters(self, doc_stride=None, max_answer_len=None, top_k=None, **others):
        fixed = sorted(name for name in FIXED_BY_THE_LAYOUT if others.get(name) is not None)
        if fixed:
            raise ConfigError(f"{', '.join(fixed)}: the DeFormer layout fixes these (question_len "
                              f"{self.deformer_config.question_len}, passage windows of "
                              f"{self.deformer_config.passage_len} tokens, spans as deformer-eval picks them)",
                              "drop them; doc_stride and max_answer_len may be given")
        if top_k not in (None, 1):
            raise ConfigError(f"top_k={top_k}: this pipeline returns the one best span, as deformer-eval does",
                              "drop top_k")
        if max_answer_len is not None and max_answer_len < 1:
            raise ConfigError(f"max_answer_len must be at least 1, got {max_answer_len}", "e.g. max_answer_len=30")
        preprocess = {} if doc_stride is None else {"doc_stride": doc_stride}
        postprocess = {} if max_answer_len is None else {"max_answer_len": max_answer_len}
        return preprocess, {}, postprocess

    def preprocess(self, example, doc_stride: int = 128):
        if isinstance(example, dict):
            question, context = example["question"], example["context"]
        else:  # transformers' SquadExample, as its argument handler makes them
            question, context = example.question_text, example.context_text
        config = self.deformer_config
        features = featurize([Example("", "", context, question, ())], self.tokenizer, config.question_len,
                             config.passage_len, doc_stride, progress=False)
        inputs = features.unsplit_inputs(self.passage_token_type)
        for row in range(len(features)):
            yield {"input_ids": torch.from_numpy(inputs["input_ids"][row:row + 1]),
                   "attention_mask": torch.from_numpy(inputs["attention_mask"][row:row + 1]),
                   "token_type_ids": torch.from_numpy(inputs["token_type_ids"][row:row + 1]),
                   "token_offsets": features.token_offsets[row], "context": context,
                   "is_last": row == len(features) - 1}

    def _forward(self, inputs):
        batch = inputs["input_ids"].shape[0]
        output = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            token_type_ids=inputs["token_type_ids"],
                            position_ids=self.position_ids.expand(batch, -1).to(inputs["input_ids"].device))
        return {"start": output.start_logits, "end": output.end_logits, "token_offsets": inputs["token_offsets"],
                "context": inputs["context"], "is_last": inputs["is_last"]}

    def postprocess(self, model_outputs, max_answer_len: int = MAX_ANSWER_TOKENS):
        """The best span across the windows by start + end logit (squad.postprocess, as deformer-eval);
        `score`: its probability in its window (softmax of the window's passage starts, times of its ends)."""
        question_len = self.deformer_config.question_len
        best, context = None, model_outputs[0]["context"]
        for output in model_outputs:
            # one window's; batched, transformers hands each back as a batch of one (offsets too)
            start = output["start"].reshape(-1).float().numpy()
            end = output["end"].reshape(-1).float().numpy()
            offsets = np.asarray(output["token_offsets"]).reshape(-1, 2)
            span = best_span(start, end, offsets, question_len, max_answer_tokens=max_answer_len)
            if span is not None and (best is None or span[0] > best[0]):
                best = (*span, start, end, offsets)
        if best is None:
            return {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        _, char_start, char_end, start, end, offsets = best
        tokens = np.flatnonzero(offsets[:, 0] >= 0)  # the window's passage tokens, as best_span's candidates
        first = np.flatnonzero(offsets[tokens, 0] == char_start)[0]
        last = np.flatnonzero(offsets[tokens, 1] == char_end)[-1]
        probability = (_softmax(start[question_len + tokens])[first] * _softmax(end[question_len + tokens])[last])
        return {"score": float(probability), "start": char_start, "end": char_end,
                "answer": context[char_start:char_end]}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exponent = np.exp(logits - logits.max())
    return exponent / exponent.sum()


def deformer_qa_pipeline(model_dir, device=None, **kwargs) -> DeformerQuestionAnsweringPipeline:
    """The pipeline of a k=0 DeFormer model directory (deformer.json gives the layout), its weights in float32
    (the reference models are kept in float16) and its tokenizer; `device` and other keywords as transformers'
    pipeline takes them (e.g. device="cuda", batch_size=8)."""
    from .model import load_qa_model, read_model_dir
    from .serving import load_tokenizer

    model_dir = Path(model_dir)
    _, saved = read_model_dir(model_dir)
    if saved is None:
        raise ConfigError(f"{model_dir} has no deformer.json: it was not trained in a DeFormer layout",
                          "use transformers' own pipeline('question-answering', model=...) for it")
    model, _ = load_qa_model(model_dir)
    return DeformerQuestionAnsweringPipeline(model=model, tokenizer=load_tokenizer(model_dir),
                                             deformer_config=saved, device=device, **kwargs)
