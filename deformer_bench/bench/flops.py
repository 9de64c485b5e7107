"""The FLOP ideal of a configuration: what the speed-up would be if time followed arithmetic."""

from dataclasses import dataclass


def layer_flops(sequence: int, hidden: int, intermediate: int) -> int:
    """One encoder layer on `sequence` tokens (a multiply-add counts 2)."""
    projections = 2 * sequence * hidden * (4 * hidden + 2 * intermediate)  # Q, K, V, output + FFN in/out
    attention = 2 * 2 * sequence * sequence * hidden  # Q K^T and (attention) V, all heads
    return projections + attention


@dataclass(frozen=True)
class PathFlops:
    unsplit: int
    online: int
    passage_precompute: int

    @property
    def ideal_speedup(self) -> float:
        return self.unsplit / self.online

    def to_dict(self) -> dict:
        return {"unsplit": self.unsplit, "online": self.online, "passage_precompute": self.passage_precompute,
                "ideal_speedup": self.ideal_speedup}


def path_flops(num_layers: int, layer: int, hidden: int, intermediate: int, question_len: int,
               passage_len: int, batch: int = 1) -> PathFlops:
    joint = layer_flops(question_len + passage_len, hidden, intermediate)
    return PathFlops(
        unsplit=batch * num_layers * joint,
        online=batch * (layer * layer_flops(question_len, hidden, intermediate) + (num_layers - layer) * joint),
        passage_precompute=batch * layer * layer_flops(passage_len, hidden, intermediate),
    )
