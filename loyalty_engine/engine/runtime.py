"""Helpers the generated code calls. Pure functions of their arguments."""

from __future__ import annotations

import datetime as dt
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)

ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")

ROUNDING = {
    "floor": ROUND_FLOOR,
    "ceiling": ROUND_CEILING,
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
    "half_down": ROUND_HALF_DOWN,
    "down": ROUND_DOWN,
    "up": ROUND_UP,
}


class Scope:
    """What context-aware functions see: today's local date, the timezone, the member context."""

    __slots__ = ("today", "tz", "ctx")

    def __init__(self, today, tz, ctx):
        self.today = today
        self.tz = tz
        self.ctx = ctx


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return Decimal(a) / Decimal(b)


def to_date(value, tz):
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).date()
    return value


def date_add(value, days, sign):
    if value is None or days is None:
        return None
    return value + sign * dt.timedelta(days=int(days))


def date_diff(a, b, tz):
    if a is None or b is None:
        return None
    return (to_date(a, tz) - to_date(b, tz)).days


def period_start(today: dt.date, period: str) -> dt.date | None:
    if period == "day":
        return today
    if period == "week":
        return today - dt.timedelta(days=today.weekday())
    if period == "month":
        return today.replace(day=1)
    if period == "year":
        return today.replace(month=1, day=1)
    return None


def limit_ok(ctx, key, today, tz, times, period, days):
    """Whether a rule may fire again under ``limit TIMES per PERIOD``, from the context's history."""
    fired = ctx.history.get(key)
    if not fired:
        return True
    if period == "member":
        return len(fired) < times
    if period == "rolling":
        start = today - dt.timedelta(days=days - 1)
    else:
        start = period_start(today, period)
        if start is None:  # "per event"
            return True
    count = 0
    for when in fired:
        if to_date(when, tz) >= start:
            count += 1
    return count < times


def budget_left(ctx, key, amount):
    used = ctx.budgets.get(key, ZERO)
    left = Decimal(amount) - Decimal(used)
    return left if left > 0 else ZERO


def cap_left(ctx, balance, period, amount):
    if period == "transaction":
        return Decimal(amount)
    earned = ctx.earned.get(f"{balance}:{period}", ZERO)
    left = Decimal(amount) - Decimal(earned)
    return left if left > 0 else ZERO


def nz(value):
    return ZERO if value is None else value


def monthly_due(today: dt.date, day: int) -> bool:
    """A monthly trigger on day 31 runs on the last day of shorter months."""
    import calendar

    last = calendar.monthrange(today.year, today.month)[1]
    return today.day == min(day, last)
