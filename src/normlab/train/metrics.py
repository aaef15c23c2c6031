"""Classification metrics shared by both studies (scikit-learn does the counting)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(y_true, y_pred, labels: Sequence[int] | None = None) -> dict:
    """Accuracy, micro F1 and macro F1 of integer predictions.

    ``labels`` restricts the F1 averages to those classes (the NER study leaves
    out ``O``); accuracy always counts every item. With all classes, micro F1
    of single-label classification equals accuracy.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"expected y_true and y_pred of one shape, got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("expected at least one prediction, got none")
    kw = dict(labels=list(labels) if labels is not None else None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", **kw)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", **kw)),
    }
