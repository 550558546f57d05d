"""distill: distill a fine-tuned cross-encoder reranker into a fast bi-encoder retriever."""

from __future__ import annotations

__version__ = "0.1.0"
