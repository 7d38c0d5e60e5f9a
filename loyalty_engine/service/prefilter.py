"""Which members a day's triggers can fire for: a conservative filter derived from their conditions.

The daily run evaluates every trigger for every member, and most members fire
nothing. Many conditions start with a test on a stored member fact (``is_birthday
(member.birthday)``, ``days_since(member.last_purchase) >= 60``, ``member.tier ==
"gold"``, ``expiring_within(30) > 0``) that the store can check far faster than
decoding the member. This module turns those tests into a store-independent
:class:`~loyalty_engine.store.filters.MemberFilter` (the SQLite store writes it as SQL); the members it rules
out are exactly ones whose every due trigger has a false condition.

The filter only ever over-approximates: a conjunct it cannot read is left out
(which widens the set), an ``or`` with an unreadable side is unreadable, and a
due trigger with nothing readable means every member is a candidate (no filter).
Triggers not due today (``weekly on monday`` on a Tuesday) contribute nobody.
Dates that come from timestamps (``last_purchase``) are widened by a day on
either side, so the program's timezone never decides a border case here: the
compiled condition decides it, as without the filter.
"""

from __future__ import annotations

import datetime as dt
import operator
from decimal import Decimal

from ..engine.runtime import monthly_due
from ..language import ast
from ..language.checker import flatten, flatten_and
from ..language.schema import WEEKDAYS
from ..program import Program
from ..store.filters import DATE_FACTS, AllOf, AnyOf, BirthdayOn, DateRange, ExpiringBy, MemberFilter, Predicate, TierIn

FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


# ------------------------------------------------------------------ reading the triggers


class TriggerFilter:
    """Built once per program: per trigger, its schedule and a day -> predicate reader (None: unreadable)."""

    def __init__(self, program: Program):
        self.program = program
        self.triggers = list(program.checked.triggers)
        self.activity_expiry = {
            name for name, info in program.checked.balances.items() if _expiry_follows_activity(info.expiry)
        }

    def for_day(self, day: dt.date) -> MemberFilter | None:
        """The filter for ``day``; None when some due trigger can fire for anyone (every member is a candidate)."""
        parts = []
        for trigger in self.triggers:
            if not _due(trigger, day):
                continue
            predicate = None if trigger.condition is None else self.predicate(trigger.condition, day)
            if predicate is None:
                return None
            parts.append(predicate)
        return MemberFilter(AnyOf(tuple(parts)))

    def predicate(self, expr, day: dt.date) -> Predicate | None:
        """What ``expr`` being true implies about stored member facts; None when it implies nothing readable."""
        if isinstance(expr, ast.Binary) and expr.op == "and":
            known = [p for p in (self.predicate(c, day) for c in flatten_and(expr)) if p is not None]
            return None if not known else known[0] if len(known) == 1 else AllOf(tuple(known))
        if isinstance(expr, ast.Binary) and expr.op == "or":
            sides = [self.predicate(side, day) for side in flatten(expr, "or")]
            return None if any(s is None for s in sides) else AnyOf(tuple(sides))
        if isinstance(expr, ast.Call):
            return self._call(expr, day)
        if isinstance(expr, ast.Binary) and expr.op in FLIP:
            return self._comparison(expr, day)
        if isinstance(expr, ast.Binary) and expr.op == "in":
            tiers = _texts(expr.right)
            if _member_path(expr.left) == "tier" and tiers:
                return TierIn(tiers)
        return None

    def _call(self, call: ast.Call, day: dt.date) -> Predicate | None:
        name, args = call.name.name, call.args
        if name == "is_birthday" and len(args) == 1 and _member_path(args[0]) == "birthday":
            days = [f"{day.month:02d}-{day.day:02d}"]
            if day.month == 2 and day.day == 28:  # a 29 February birthday falls on the 28th in other years
                days.append("02-29")
            return BirthdayOn(tuple(days))
        if name == "between" and len(args) == 3:
            low, high = _integer(args[1]), _integer(args[2])
            counted = _day_count(args[0])
            if counted is None or low is None or high is None:
                return None
            fact, sign = counted
            return _days_range(fact, sign, low, high, day)
        return None

    def _comparison(self, expr: ast.Binary, day: dt.date) -> Predicate | None:
        op, left, right = expr.op, expr.left, expr.right
        if _integer(left) is not None and _integer(right) is None:  # 60 <= days_since(...): read it the other way
            op, left, right = FLIP[op], right, left
        if op == "==" and _member_path(right) == "tier":
            left, right = right, left
        if op == "==" and _member_path(left) == "tier" and isinstance(right, ast.Literal) and right.kind == "text":
            return TierIn((right.value,))
        bound = _integer(right)
        if bound is None:
            return None
        counted = _day_count(left)
        if counted is not None:
            fact, sign = counted
            low, high = {
                ">=": (bound, None),
                ">": (bound + 1, None),
                "<=": (None, bound),
                "<": (None, bound - 1),
                "==": (bound, bound),
            }[op]
            return _days_range(fact, sign, low, high, day)
        expiring = self._expiring(left, day)
        if expiring is not None and not COMPARE[op](0, bound):  # a member with nothing expiring fails it
            return expiring
        return None

    def _expiring(self, expr, day: dt.date) -> ExpiringBy | None:
        if not (isinstance(expr, ast.Call) and expr.name.name == "expiring_within" and 1 <= len(expr.args) <= 2):
            return None
        days = _integer(expr.args[0])
        balance = "points"
        if len(expr.args) == 2:
            arg = expr.args[1]
            if not (isinstance(arg, ast.Literal) and arg.kind == "text"):
                return None
            balance = arg.value
        if days is None or balance in self.activity_expiry or balance not in self.program.checked.balances:
            return None  # lots that expire after the last activity have no stored expiry to look up
        return ExpiringBy(balance, day + dt.timedelta(days=days))


# ------------------------------------------------------------------ helpers


def _due(trigger: ast.Trigger, day: dt.date) -> bool:
    if trigger.schedule == "weekly" and isinstance(trigger.schedule_arg, ast.Ident):
        return day.weekday() == WEEKDAYS.index(trigger.schedule_arg.name)
    if trigger.schedule == "monthly" and trigger.schedule_arg is not None:
        return monthly_due(day, int(trigger.schedule_arg))
    return True


def _member_path(expr) -> str | None:
    if isinstance(expr, ast.Path) and len(expr.parts) == 2 and expr.parts[0].name == "member":
        return expr.parts[1].name
    return None


def _integer(expr) -> int | None:
    if isinstance(expr, ast.Literal) and expr.kind == "number" and isinstance(expr.value, Decimal):
        if expr.value == expr.value.to_integral_value():
            return int(expr.value)
    return None


def _texts(expr) -> tuple[str, ...] | None:
    if isinstance(expr, ast.ListExpr) and expr.items:
        if all(isinstance(i, ast.Literal) and i.kind == "text" for i in expr.items):
            return tuple(i.value for i in expr.items)
    return None


def _day_count(expr) -> tuple[str, int] | None:
    """``days_since(member.F)`` -> (F, -1), ``days_until(member.F)`` -> (F, +1), for a stored date fact F."""
    if isinstance(expr, ast.Call) and expr.name.name in ("days_since", "days_until") and len(expr.args) == 1:
        fact = _member_path(expr.args[0])
        if fact in DATE_FACTS:
            return fact, -1 if expr.name.name == "days_since" else 1
    return None


def _days_range(fact: str, sign: int, low: int | None, high: int | None, day: dt.date) -> DateRange:
    """days_since(F) in [low, high] means F in [day - high, day - low]; days_until(F): [day + low, day + high]."""

    def at(n: int | None) -> dt.date | None:
        if n is None:
            return None
        try:
            return day + dt.timedelta(days=sign * n)
        except OverflowError:  # beyond the calendar: that end is open
            return None

    if sign < 0:
        return DateRange(fact, at(high), at(low))
    return DateRange(fact, at(low), at(high))


def _expiry_follows_activity(policy) -> bool:
    return policy is not None and policy.kind == "after" and policy.after == "last activity"
