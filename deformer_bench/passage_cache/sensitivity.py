"""How much the answer feels an error in each direction of the cached passage states (issue 25).

A codec that spends its bytes evenly on squared error wastes them: the upper layers are far more sensitive to
some directions of the layer-k states than to others. The Fisher information of the answer distribution with
respect to a passage token's state, F = E[g g^T] with g the gradient of log p(start) + log p(end) for a start
and an end drawn from the model's own distribution, is the metric of that sensitivity to second order: a small
error d in a token's state moves the answer distribution by KL ~ d^T F d / 2. quantizers.ProductQuantizer's
transform "fisher" codes in this metric.
"""

import numpy as np
import torch


def fisher_metric(deformer, features, batch_size: int = 16, draws: int = 4, seed: int = 0) -> np.ndarray:
    """[H, H] float64: the mean over the valid passage tokens of `features` (and `draws` sampled answers per
    window) of g g^T, g the gradient of the sampled answer's log-likelihood with respect to the token's state
    at layer k. `deformer`: a model.Deformer (PyTorch), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    hidden = deformer.hidden_size
    total, tokens = np.zeros((hidden, hidden)), 0
    arrays = {name: torch.from_numpy(getattr(features, name)) for name in
              ("question_input_ids", "question_attention_mask", "passage_input_ids", "passage_attention_mask")}
    for start in range(0, len(features), batch_size):
        part = {name: array[start:start + batch_size] for name, array in arrays.items()}
        with torch.no_grad():
            question = deformer.lower_question(part["question_input_ids"], part["question_attention_mask"])
            passage = deformer.lower_passage(part["passage_input_ids"], part["passage_attention_mask"])
        passage.requires_grad_(True)
        start_logits, end_logits = deformer.upper(question, part["question_attention_mask"], passage,
                                                  part["passage_attention_mask"])
        mask = torch.cat([part["question_attention_mask"], part["passage_attention_mask"]], dim=1) == 0
        log_start = start_logits.masked_fill(mask, -1e4).log_softmax(dim=-1)
        log_end = end_logits.masked_fill(mask, -1e4).log_softmax(dim=-1)
        valid = part["passage_attention_mask"].bool().numpy()
        for draw in range(draws):
            starts = torch.multinomial(log_start.exp(), 1, generator=generator)
            ends = torch.multinomial(log_end.exp(), 1, generator=generator)
            likelihood = log_start.gather(1, starts).sum() + log_end.gather(1, ends).sum()
            gradient, = torch.autograd.grad(likelihood, passage, retain_graph=draw < draws - 1)
            rows = gradient.numpy()[valid].astype(np.float64)
            total += rows.T @ rows
            tokens += len(rows)
    return total / max(tokens, 1)
