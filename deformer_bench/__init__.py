"""deformer-bench: decompose extractive-QA transformers (DeFormer) and measure what it buys."""

__version__ = "0.1.0"
