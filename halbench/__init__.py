"""halbench: measure and reduce hallucination in vision-language models."""

__version__ = "0.1.0"
