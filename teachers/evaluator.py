"""Validation of a reranker with trec_eval metrics, usable by ``CrossEncoderTrainer``.

sentence-transformers' own reranking evaluator treats relevance as binary; this one reranks
each validation query's candidate list and scores it with pytrec_eval on graded qrels, so the
checkpoint picked during training is the one our reports would pick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sentence_transformers.base.evaluation import BaseEvaluator

from distill import metrics


class RerankEvaluator(BaseEvaluator):
    """NDCG@10 and MRR@10 of a cross-encoder reranking fixed candidate lists.

    Parameters
    ----------
    queries : {qid: text}
    documents : {did: text}
    candidates : {qid: [did, ...]}, the lists to rerank (positives included)
    qrels : {qid: {did: grade}}
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        documents: Mapping[str, str],
        candidates: Mapping[str, Sequence[str]],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        name: str = "val",
        batch_size: int = 32,
        windows=None,
    ) -> None:
        super().__init__()
        self.name = name
        self.windows = windows  # teachers.windows.Windows: long documents read as windows
        self.window_stats: dict[str, int] = {}
        self.scored = 0  # (query, text) pairs the model scored at the last call
        self.batch_size = batch_size
        self.owners = [(q, d) for q, dids in candidates.items() for d in dids]
        self.pairs = [(queries[q], documents[d]) for q, d in self.owners]
        self.qrels = {q: dict(qrels.get(q, {})) for q in candidates}
        self.primary_metric = "ndcg@10"
        self.last_scores: np.ndarray | None = None
        self.history: list[dict[str, float]] = []
        self.scores_at: dict[int, np.ndarray] = {}  # each in-training validation's, by step

    def labels(self) -> np.ndarray:
        """1 for a relevant (grade > 0) candidate, else 0, in pair order."""
        return np.array([1.0 if self.qrels[q].get(d, 0) > 0 else 0.0 for q, d in self.owners])

    def evaluate_scores(self, scores: np.ndarray) -> dict[str, float]:
        run: dict[str, dict[str, float]] = {}
        for (q, d), s in zip(self.owners, scores, strict=True):
            run.setdefault(q, {})[d] = float(s)
        return {
            k: round(v, 4)
            for k, v in metrics.summarize(self.qrels, run, ["ndcg@10", "mrr@10"]).items()
        }

    def __call__(
        self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        self.last_scores = np.asarray(self._scores(model), dtype=np.float64)
        if steps >= 0:
            self.scores_at[steps] = self.last_scores
        result = self.evaluate_scores(self.last_scores)
        self.history.append({"epoch": epoch, "steps": steps, **result})
        self.primary_metric = "ndcg@10"
        out = self.prefix_name_to_metrics(result, self.name)
        self.store_metrics_in_model_card_data(model, out, epoch, steps)
        return out

    def _scores(self, model) -> np.ndarray:
        """The model's score of every candidate, in pair order (sets ``scored``)."""
        import torch

        def predict(pairs):
            return model.predict(
                pairs,
                batch_size=self.batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=False,
            )

        if self.windows is None or self.windows.pooling == "first":
            scores, self.scored = predict(self.pairs), len(self.pairs)
        else:  # the pooled scores that label and evaluate will use, windows.json says so
            from teachers.windows import score_windowed

            stats: dict[str, int] = {}
            scores = score_windowed(
                predict, model.tokenizer, self.pairs, model.max_length, self.windows, stats
            )
            self.window_stats, self.scored = stats, stats["windows"]
        return scores
