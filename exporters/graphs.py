"""The graphs a DeFormer is exported as: names, inputs, outputs and dynamic axes, one entry each.

These names are a contract (runners, the passage cache and other languages' clients rely on them).
"""

from dataclasses import dataclass

import torch
from torch import nn

BATCH = "batch"
QUESTION_LENGTH = "question_length"
PASSAGE_LENGTH = "passage_length"
SEQUENCE_LENGTH = "sequence_length"


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: dict  # input name -> axis names, in call order
    outputs: dict  # output name -> axis names

    @property
    def file_name(self) -> str:
        return f"{self.name}.onnx"

    def dynamic_axes(self) -> dict:
        named = {**self.inputs, **self.outputs}
        return {tensor: {i: axis for i, axis in enumerate(axes) if axis != "hidden"} for tensor, axes in named.items()}


GRAPHS = {
    spec.name: spec
    for spec in (
        GraphSpec(
            "lower_question",
            inputs={"question_input_ids": (BATCH, QUESTION_LENGTH), "question_attention_mask": (BATCH, QUESTION_LENGTH)},
            outputs={"question_hidden": (BATCH, QUESTION_LENGTH, "hidden")},
        ),
        GraphSpec(
            "lower_passage",
            inputs={"passage_input_ids": (BATCH, PASSAGE_LENGTH), "passage_attention_mask": (BATCH, PASSAGE_LENGTH)},
            outputs={"passage_hidden": (BATCH, PASSAGE_LENGTH, "hidden")},
        ),
        GraphSpec(
            "upper",
            inputs={
                "question_hidden": (BATCH, QUESTION_LENGTH, "hidden"),
                "question_attention_mask": (BATCH, QUESTION_LENGTH),
                "passage_hidden": (BATCH, PASSAGE_LENGTH, "hidden"),
                "passage_attention_mask": (BATCH, PASSAGE_LENGTH),
            },
            outputs={"start_logits": (BATCH, SEQUENCE_LENGTH), "end_logits": (BATCH, SEQUENCE_LENGTH)},
        ),
        GraphSpec(
            "full",
            inputs={
                "input_ids": (BATCH, SEQUENCE_LENGTH),
                "attention_mask": (BATCH, SEQUENCE_LENGTH),
                "token_type_ids": (BATCH, SEQUENCE_LENGTH),
            },
            outputs={"start_logits": (BATCH, SEQUENCE_LENGTH), "end_logits": (BATCH, SEQUENCE_LENGTH)},
        ),
    )
}
SPLIT_GRAPHS = ("lower_question", "lower_passage", "upper")


class GraphModule(nn.Module):
    """One split graph as a module for the exporter: the Deformer method of the same name."""

    def __init__(self, deformer, graph: str):
        super().__init__()
        if graph not in SPLIT_GRAPHS:
            raise ValueError(f"{graph!r} is not a split graph: {SPLIT_GRAPHS}")
        self.deformer = deformer
        self.graph = graph

    def forward(self, *inputs):
        return getattr(self.deformer, self.graph)(*inputs)


def example_inputs(deformer, batch: int, question_len: int, passage_len: int, seed: int = 0) -> dict:
    """Random ids and masks of the given shape; row 0 full length, later rows padded at random.

    Returns every tensor any graph takes, including the unsplit model's concatenated inputs.
    """
    generator = torch.Generator().manual_seed(seed)
    vocab = deformer.hf_config.vocab_size

    def segment(length):
        ids = torch.randint(3, vocab, (batch, length), generator=generator)
        mask = torch.ones(batch, length, dtype=torch.long)
        for row in range(1, batch):
            valid = int(torch.randint(2, length + 1, (1,), generator=generator))
            mask[row, valid:] = 0
        return ids, mask

    question_ids, question_mask = segment(question_len)
    passage_ids, passage_mask = segment(passage_len)
    passage_type = deformer.architecture.passage_token_type(deformer.hf_config)
    with torch.no_grad():
        question_hidden = deformer.lower_question(question_ids, question_mask)
        passage_hidden = deformer.lower_passage(passage_ids, passage_mask)
    return {
        "question_input_ids": question_ids,
        "question_attention_mask": question_mask,
        "passage_input_ids": passage_ids,
        "passage_attention_mask": passage_mask,
        "question_hidden": question_hidden,
        "passage_hidden": passage_hidden,
        "input_ids": torch.cat([question_ids, passage_ids], dim=1),
        "attention_mask": torch.cat([question_mask, passage_mask], dim=1),
        "token_type_ids": torch.cat(
            [torch.zeros_like(question_ids), torch.full_like(passage_ids, passage_type)], dim=1
        ),
    }
