"""Where each supported encoder family keeps its parts: one row per family, nothing else.

Every supported family is an encoder with a `...ForQuestionAnswering` head named `qa_outputs`,
embeddings that accept explicit `position_ids`, and layers called as `layer(hidden, attention_mask)`.
"""

from dataclasses import dataclass

from .contracts.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Architecture:
    model_type: str
    base_attr: str  # attribute of the QA model that holds the encoder (model.bert, model.roberta, ...)
    # RoBERTa numbers positions from padding_idx + 1 (its embeddings reserve 0..padding_idx).
    positions_start_after_padding: bool = False
    # ELECTRA may embed in a smaller space and project up to the hidden size.
    has_embeddings_project: bool = False

    def encoder_model(self, qa_model):
        return getattr(qa_model, self.base_attr)

    def embeddings(self, qa_model):
        return self.encoder_model(qa_model).embeddings

    def layers(self, qa_model):
        return self.encoder_model(qa_model).encoder.layer

    def embeddings_project(self, qa_model):
        if not self.has_embeddings_project:
            return None
        return getattr(self.encoder_model(qa_model), "embeddings_project", None)

    def first_position(self, hf_config) -> int:
        return hf_config.pad_token_id + 1 if self.positions_start_after_padding else 0

    def passage_token_type(self, hf_config) -> int:
        # Token type 1 for the passage, as BERT was pre-trained; families with a single type use 0.
        return 1 if getattr(hf_config, "type_vocab_size", 1) >= 2 else 0


ARCHITECTURES = {
    "bert": Architecture("bert", base_attr="bert"),
    "roberta": Architecture("roberta", base_attr="roberta", positions_start_after_padding=True),
    "electra": Architecture("electra", base_attr="electra", has_embeddings_project=True),
}


def architecture_for(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}",
            "use a model directory of a supported family (config.json 'model_type')",
        ) from None
