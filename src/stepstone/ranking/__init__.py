"""Rank zoo adapters for a target before any training (issue 15; README "Choosing intermediate tasks").

Estimators: LogME (logme.py), dataset similarity (similarity.py), a short proxy training (proxy.py); features
with a candidate adapter active (features.py, cached); `rank` (run.py) puts them together into a `Ranking`
(records.py); agreement.py measures how well a ranking predicted the gains a grid measured.
Importing this package is light (no torch): `rank` loads run.py when called.
"""
from __future__ import annotations

from typing import Any

from .records import DEFAULT_ESTIMATORS, NONE, Estimator, Ranking, Row, Score, parse_estimators

__all__ = ["DEFAULT_ESTIMATORS", "NONE", "Estimator", "Ranking", "Row", "Score", "parse_estimators", "rank"]


def rank(target: str, **options: Any) -> Ranking:
    """`run.rank`: score every candidate for `target` (see there for the options)."""
    from .run import rank as run_rank

    return run_rank(target, **options)
