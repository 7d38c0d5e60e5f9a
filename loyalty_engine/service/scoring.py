"""Scores for ``score("name")``: member facts in, the registered scoring models' values out.

The models themselves are plugins (the built-in RFM, churn risk and CLV live in
``default_plugins/scoring.py``). Each model gets a member's facts, a mapping
with the keys of :data:`FACTS`, computed once per member and only when a rule
reads a score. A model that raises does not stop the event or the batch: the
score reads as missing (so conditions on it are false and the rules reading it
do not apply) and the failure is reported with the model, its plugin and those
rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from ..language import ast

YEAR = ast.Window("rolling", 12, "month")
WINDOWS = (YEAR,)
ACTIVITY = ("spend", "visits", "purchases", "nights", "refunds", "points_earned", "points_redeemed")
ZERO = Decimal(0)

FACTS = {
    "today": "the day scored, in the program's timezone",
    "days_since_last": "whole days since the last purchase (None: never bought)",
    "days_since_joined": "whole days since joining (None: unknown)",
    "purchases_12m": "purchases over the last 12 months (an int)",
    "spend_12m": "net spend over the last 12 months (Decimal)",
    "visits_12m": "visits over the last 12 months (an int)",
    "refunds_12m": "refunded amount over the last 12 months (Decimal)",
    "lifetime_spend": "net spend since joining (Decimal)",
    "lifetime_purchases": "purchases since joining (an int)",
    "tier": "the member's tier (None: none)",
    "points": "the member's points balance (Decimal)",
}


def member_facts(record, stats: Mapping[str, Decimal], today: dt.date) -> dict:
    """The facts a scoring model reads about one member (see :data:`FACTS`)."""
    last = record.last_purchase
    joined = record.member.joined
    key = YEAR.key
    return {
        "today": today,
        "days_since_last": None if last is None else (today - last.date()).days,
        "days_since_joined": None if joined is None else (today - joined).days,
        "purchases_12m": int(stats.get(f"purchases:{key}", 0)),
        "spend_12m": Decimal(stats.get(f"spend:{key}", 0)),
        "visits_12m": int(stats.get(f"visits:{key}", 0)),
        "refunds_12m": Decimal(stats.get(f"refunds:{key}", 0)),
        "lifetime_spend": record.lifetime.get("spend", ZERO),
        "lifetime_purchases": int(record.lifetime.get("purchases", 0)),
        "tier": record.member.tier,
        "points": record.balances.get("points", ZERO),
    }


class ScoreBoard:
    """The scoring models one program reads, and which of its rules read each."""

    def __init__(self, program):
        from .history import iter_nodes

        checked = program.checked
        self.names = sorted(set(checked.score_names.values()))
        self.models = {name: checked.schema.scores[name] for name in self.names}
        self.readers: dict[str, list[str]] = {name: [] for name in self.names}
        for root in (*checked.rules, *checked.triggers):
            for node in iter_nodes(root):
                name = checked.score_names.get(id(node))
                if name is not None and root.name not in self.readers[name]:
                    self.readers[name].append(root.name)
        self.batched = [name for name, model in self.models.items() if model.score_many is not None]

    def failure(self, name: str, exc: Exception, member: str) -> str:
        model = self.models[name]
        rules = ", ".join(f"'{r}'" for r in self.readers[name]) or "none"
        return (
            f"score '{name}' (plugin '{model.provider}') failed for member '{member}': {type(exc).__name__}: {exc}; "
            f"it reads as missing, so these rules did not apply on it: {rules}"
        )

    def prefill(self, scores: list[LazyScores]) -> None:
        """Compute the batch-capable models for many members at once (the daily run)."""
        for name in self.batched:
            model = self.models[name]
            try:
                values = model.score_many([s.member_facts() for s in scores])
                if len(values) != len(scores):
                    raise ValueError(f"score_many returned {len(values)} values for {len(scores)} members")
            except Exception as exc:
                for s in scores:
                    s.fail(name, exc)
                continue
            for s, value in zip(scores, values):
                s.values[name] = value


class LazyScores(Mapping):
    """A member's scores, each computed the first time a rule reads it (most conditions stop earlier)."""

    __slots__ = ("board", "record", "stats", "today", "values", "facts", "errors")

    def __init__(self, board: ScoreBoard, record, stats, today: dt.date):
        self.board = board
        self.record = record
        self.stats = stats
        self.today = today
        self.values: dict = {}
        self.facts = None
        self.errors: list[str] = []

    def member_facts(self) -> dict:
        if self.facts is None:
            self.facts = member_facts(self.record, self.stats, self.today)
        return self.facts

    def fail(self, name: str, exc: Exception) -> None:
        self.values[name] = None
        self.errors.append(self.board.failure(name, exc, self.record.member.id))

    def __getitem__(self, name: str):
        if name not in self.values:
            try:
                self.values[name] = self.board.models[name].score(self.member_facts())
            except Exception as exc:  # isolate the model: its score is missing, the rest goes on
                self.fail(name, exc)
        return self.values[name]

    def get(self, name, default=None):
        if name not in self.board.models:
            return default
        return self[name]

    def __iter__(self):
        return iter(self.board.models)

    def __len__(self) -> int:
        return len(self.board.models)
