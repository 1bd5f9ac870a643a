"""Precision, recall and F1 of a predicted node set against a reference set."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def _sets(predicted: Iterable[Hashable], reference: Iterable[Hashable]) -> tuple[set, set]:
    return set(predicted), set(reference)


def precision(predicted: Iterable[Hashable], reference: Iterable[Hashable]) -> float:
    """|predicted & reference| / |predicted|; nan when nothing is predicted."""
    pred, ref = _sets(predicted, reference)
    return len(pred & ref) / len(pred) if pred else float("nan")


def recall(predicted: Iterable[Hashable], reference: Iterable[Hashable]) -> float:
    """|predicted & reference| / |reference|; nan when the reference is empty."""
    pred, ref = _sets(predicted, reference)
    return len(pred & ref) / len(ref) if ref else float("nan")


def f1_score(predicted: Iterable[Hashable], reference: Iterable[Hashable]) -> float:
    """Harmonic mean of precision and recall; 0 when they share nothing, nan when
    either is undefined."""
    pred, ref = _sets(predicted, reference)
    if not pred or not ref:
        return float("nan")
    hits = len(pred & ref)
    return 2 * hits / (len(pred) + len(ref))
