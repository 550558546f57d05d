"""Calibration: cross-encoder scores are logits, not probabilities.

Platt scaling fits ``p = sigmoid(a * logit + b)`` on validation pairs (relevant = grade > 0)
by maximum likelihood. It is stored as ``calibration.json`` with ``temperature = 1 / a`` and
``bias = b`` (so ``p = sigmoid(logit / temperature + bias)``), together with the expected
calibration error before (plain sigmoid) and after, and a reliability plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FILE = "calibration.json"


@dataclass
class Calibration:
    temperature: float = 1.0
    bias: float = 0.0
    method: str = "identity"
    ece_before: float | None = None
    ece_after: float | None = None
    pairs: int = 0

    def logit(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of raw scores."""
        return np.asarray(scores, dtype=np.float64) / self.temperature + self.bias

    def probability(self, scores: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * self.logit(scores)))

    def save(self, folder: str | Path) -> Path:
        from distill.artifacts import write_json

        return write_json(Path(folder) / FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> Calibration:
        path = Path(folder) / FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: sum over bins of |accuracy - confidence| * share of pairs."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += abs(labels[mask].mean() - probs[mask].mean()) * mask.mean()
    return float(ece)


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit ``sigmoid(a * s + b)`` to binary labels by Newton's method on the log-likelihood.

    A tiny ridge on ``a`` and ``b`` keeps the fit finite on perfectly separable data.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.size == 0 or y.min() == y.max():
        raise ValueError("calibration needs both relevant and non-relevant validation pairs")
    x = np.stack([s, np.ones_like(s)], axis=1)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w = np.array([0.0, np.log(rate / (1 - rate))])  # start at the base rate
    ridge = 1e-3

    def nll(v: np.ndarray) -> float:
        z = x @ v
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * v @ v)

    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ w)))  # a sigmoid that cannot overflow
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        size, current = 1.0, nll(w)
        while nll(w - size * step) > current and size > 1e-6:
            size /= 2  # damped Newton: never increase the loss
        w = w - size * step
        if np.abs(size * step).max() < 1e-8:
            break
    a, b = float(w[0]), float(w[1])
    method = "platt"
    if a <= 0:
        # Scores unrelated (or inversely related) to relevance: the honest probability is the
        # base rate; the method says so, so that callers can warn.
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        a, b, method = 1e-6, float(np.log(rate / (1 - rate))), "base-rate"
    cal = Calibration(temperature=1.0 / a, bias=b, method=method, pairs=int(s.size))
    cal.ece_before = expected_calibration_error(0.5 * (1.0 + np.tanh(0.5 * s)), y)
    cal.ece_after = expected_calibration_error(cal.probability(s), y)
    return cal


def reliability_plot(
    scores: np.ndarray, labels: np.ndarray, cal: Calibration, path: str | Path, bins: int = 10
) -> Path:
    """Reliability diagram (observed share relevant per confidence bin), before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distill.artifacts import atomic_path

    y = np.asarray(labels, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfect")
    for name, probs in (
        ("raw sigmoid", 0.5 * (1.0 + np.tanh(0.5 * np.asarray(scores, dtype=np.float64)))),
        ("calibrated", cal.probability(scores)),
    ):
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            mask = which == b
            if mask.any():
                xs.append(probs[mask].mean())
                ys.append(y[mask].mean())
        ece = expected_calibration_error(probs, y, bins)
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("teacher probability")
    ax.set_ylabel("share relevant (validation)")
    ax.set_title("Teacher calibration")
    ax.legend(loc="upper left", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
