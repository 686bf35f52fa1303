"""CLoCE: prompt-tuning + contrastive learning for relation extraction (see METHOD.md)."""
__version__ = "0.1.0"
