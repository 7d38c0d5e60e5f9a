"""Scores for ``score("name")``, computed from a member's stored facts.

The built-in models are deliberately simple and documented (docs/store.md):

- ``churn_risk``: recency against the member's own buying rhythm,
  ``1 - exp(-days_since_last / (1.5 * typical_gap))``, where the typical gap
  is 365 / purchases in the last 12 months (60 days when there are none).
- ``rfm_score`` / ``rfm_segment``: recency, frequency and monetary grades of
  1 to 5 on fixed cut points (days 30/60/120/240; purchases 2/5/10/20 and spend
  in the program currency 500/1000/2500/5000 over 12 months), summed to 3-15 and
  named with the usual segments.
- ``clv``: average order value x purchases per year x expected years (3),
  ``spend_12m / purchases_12m * purchases_12m * 3`` discounted by churn risk.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from decimal import Decimal

from ..language import ast

YEAR = ast.Window("rolling", 12, "month")
WINDOWS = (YEAR,)
ACTIVITY = ("spend", "visits", "purchases", "nights", "refunds", "points_earned", "points_redeemed")
TWO = Decimal("0.01")


def _facts(record, stats, today: dt.date) -> dict:
    last = record.last_purchase
    return {
        "days_since_last": None if last is None else (today - last.date()).days,
        "purchases_12m": int(stats.get(f"purchases:{YEAR.key}", 0)),
        "spend_12m": Decimal(stats.get(f"spend:{YEAR.key}", 0)),
    }


def churn_risk(facts: dict) -> Decimal:
    days = facts["days_since_last"]
    if days is None:
        return Decimal("0.50")
    gap = 365 / facts["purchases_12m"] if facts["purchases_12m"] else 60
    return Decimal(str(1 - math.exp(-max(days, 0) / (1.5 * gap)))).quantize(TWO)


def _grade(value, cuts) -> int:
    """1 below the first cut, 2 from it, ... 5 from the fourth."""
    return 1 + sum(1 for cut in cuts if value >= cut)


def rfm_grades(facts: dict) -> tuple[int, int, int]:
    days = facts["days_since_last"]
    recency = 1 if days is None else _grade(-days, (-240, -120, -60, -30))
    frequency = _grade(facts["purchases_12m"], (2, 5, 10, 20))
    monetary = _grade(facts["spend_12m"], (500, 1000, 2500, 5000))
    return recency, frequency, monetary


def rfm_score(facts: dict) -> Decimal:
    return Decimal(sum(rfm_grades(facts)))


def rfm_segment(facts: dict) -> str:
    r, f, m = rfm_grades(facts)
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 4 and f <= 2:
        return "new" if f == 1 else "promising"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r <= 2 and f <= 2:
        return "lost" if r == 1 else "hibernating"
    return "need_attention"


def clv(facts: dict) -> Decimal:
    years = Decimal(3) * (Decimal(1) - churn_risk(facts))
    return (facts["spend_12m"] * years).quantize(TWO)


MODELS: dict[str, Callable[[dict], object]] = {
    "churn_risk": churn_risk,
    "rfm_score": rfm_score,
    "rfm_segment": rfm_segment,
    "clv": clv,
}


class ScoreBoard:
    """Computes the scores a program uses, for one member at a time."""

    def __init__(self, program):
        self.names = sorted(set(program.checked.score_names.values()))
        self.models = {name: MODELS[name] for name in self.names if name in MODELS}

    def scores(self, record, stats, today: dt.date) -> dict:
        if not self.models:
            return {}
        facts = _facts(record, stats, today)
        return {name: model(facts) for name, model in self.models.items()}


class LazyScores(Mapping):
    """A member's scores, each computed the first time a rule reads it (most conditions stop earlier)."""

    __slots__ = ("board", "record", "stats", "today", "values", "facts")

    def __init__(self, board: ScoreBoard, record, stats, today: dt.date):
        self.board = board
        self.record = record
        self.stats = stats
        self.today = today
        self.values: dict = {}
        self.facts = None

    def __getitem__(self, name: str):
        if name not in self.values:
            model = self.board.models[name]
            if self.facts is None:
                self.facts = _facts(self.record, self.stats, self.today)
            self.values[name] = model(self.facts)
        return self.values[name]

    def __iter__(self):
        return iter(self.board.models)

    def __len__(self) -> int:
        return len(self.board.models)
