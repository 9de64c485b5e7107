"""The graphs a DeFormer is exported as: names, inputs, outputs, element types and dynamic axes.

These names are a contract: the exporter writes graphs that keep it, and the benchmark runner, the
evaluation, the passage cache, serving and other languages' clients rely on it. This module imports only
the standard library, so that code which runs graphs (and ships to a measured machine) needs no torch.
"""

from dataclasses import dataclass

BATCH = "batch"
QUESTION_LENGTH = "question_length"
PASSAGE_LENGTH = "passage_length"
SEQUENCE_LENGTH = "sequence_length"
HIDDEN = "hidden"  # the model's hidden size: the one fixed axis

INT64, FLOAT32 = "int64", "float32"  # numpy names of the element types


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: dict  # input name -> axis names, in call order
    outputs: dict  # output name -> axis names
    float_inputs: tuple = ()  # inputs of hidden states (float32); every other input is token ids or a mask (int64)

    @property
    def file_name(self) -> str:
        return f"{self.name}.onnx"

    @property
    def ort_file_name(self) -> str:
        """The same graph in onnxruntime's ORT format (for mobile runtimes)."""
        return f"{self.name}.ort"

    def input_dtype(self, name: str) -> str:
        if name not in self.inputs:
            raise KeyError(f"{self.name} has no input {name!r}")
        return FLOAT32 if name in self.float_inputs else INT64

    def dynamic_axes(self) -> dict:
        named = {**self.inputs, **self.outputs}
        return {tensor: {i: axis for i, axis in enumerate(axes) if axis != HIDDEN} for tensor, axes in named.items()}


GRAPHS = {
    spec.name: spec
    for spec in (
        GraphSpec(
            "lower_question",
            inputs={"question_input_ids": (BATCH, QUESTION_LENGTH), "question_attention_mask": (BATCH, QUESTION_LENGTH)},
            outputs={"question_hidden": (BATCH, QUESTION_LENGTH, HIDDEN)},
        ),
        GraphSpec(
            "lower_passage",
            inputs={"passage_input_ids": (BATCH, PASSAGE_LENGTH), "passage_attention_mask": (BATCH, PASSAGE_LENGTH)},
            outputs={"passage_hidden": (BATCH, PASSAGE_LENGTH, HIDDEN)},
        ),
        GraphSpec(
            "upper",
            inputs={
                "question_hidden": (BATCH, QUESTION_LENGTH, HIDDEN),
                "question_attention_mask": (BATCH, QUESTION_LENGTH),
                "passage_hidden": (BATCH, PASSAGE_LENGTH, HIDDEN),
                "passage_attention_mask": (BATCH, PASSAGE_LENGTH),
            },
            outputs={"start_logits": (BATCH, SEQUENCE_LENGTH), "end_logits": (BATCH, SEQUENCE_LENGTH)},
            float_inputs=("question_hidden", "passage_hidden"),
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
