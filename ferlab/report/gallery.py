"""Which faces the report shows: the most confident mistakes of each true class, and a few
faces of each class to explain. Pure functions of predictions, so tests can check the choice."""
from __future__ import annotations

import numpy as np


def mistakes(probs: np.ndarray, y_true: np.ndarray, per_class: int) -> dict[int, list[int]]:
    """For each true class k: the indices of up to `per_class` misclassified faces of class k,
    most confident first (confidence = the probability of the predicted, wrong class)."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    pred, conf = probs.argmax(1), probs.max(1)
    out = {}
    for k in range(probs.shape[1]):
        wrong = np.flatnonzero((y_true == k) & (pred != k))
        order = wrong[np.argsort(-conf[wrong], kind="stable")]
        out[k] = order[:per_class].tolist()
    return out


def examples(y_true: np.ndarray, num_classes: int, per_class: int) -> dict[int, list[int]]:
    """For each class: the first `per_class` faces of it in dataset order (whatever the model
    predicts, so the explanations are not chosen to flatter it)."""
    y_true = np.asarray(y_true)
    return {k: np.flatnonzero(y_true == k)[:per_class].tolist() for k in range(num_classes)}
