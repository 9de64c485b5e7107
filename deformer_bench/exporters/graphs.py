"""The torch side of the graph contract: each split graph as a module for the exporter, and example inputs.

The contract (names, inputs, outputs, element types, dynamic axes) is deformer_bench.contracts.graphs.
"""

import torch
from torch import nn

from ..contracts.graphs import SPLIT_GRAPHS


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
