"""Built-in functions, channels and scores of the rules language.

Each is registered on the schema exactly as a plugin registers its own.
Run-time semantics: a missing value (``none``) passed to a function gives
``none``, and a comparison with ``none`` is false.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from . import types as T
from .schema import Channel, Function, Schema, Score

DATES = frozenset({T.DATE, T.DATETIME})
NUMS = frozenset({T.NUMBER, T.MONEY})
ANYT = frozenset({T.ANY})
TEXTS = frozenset({T.TEXT})


def _local_date(scope, value):
    if isinstance(value, dt.datetime):
        return value.astimezone(scope.tz).date()
    return value


def weekday(value):
    return value.weekday()


def month(value):
    return value.month


def day(value):
    return value.day


def year(value):
    return value.year


def hour(value):
    return value.hour


def days_since(scope, value):
    return (scope.today - _local_date(scope, value)).days


def days_until(scope, value):
    return (_local_date(scope, value) - scope.today).days


def between(value, low, high):
    if value is None or low is None or high is None:
        return False
    if isinstance(value, dt.datetime) and not isinstance(low, dt.datetime):
        value = value.date()
    return low <= value <= high


def is_birthday(scope, value):
    """True on the member's birthday; a 29 February birthday falls on 28 February in other years."""
    if value is None:
        return False
    today = scope.today
    if value.month == 2 and value.day == 29 and not calendar.isleap(today.year):
        return today.month == 2 and today.day == 28
    return today.month == value.month and today.day == value.day


def minimum(*values):
    present = [v for v in values if v is not None]
    return min(present) if present else None


def maximum(*values):
    present = [v for v in values if v is not None]
    return max(present) if present else None


def round_(value, places=0):
    return Decimal(value).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)


def floor(value):
    return Decimal(value).to_integral_value(rounding=ROUND_FLOOR)


def ceil(value):
    return Decimal(value).to_integral_value(rounding=ROUND_CEILING)


def absolute(value):
    return abs(value)


def number(value):
    return value


def lower(value):
    return value.lower()


def upper(value):
    return value.upper()


def contains(text, part):
    return part in text


def starts_with(text, prefix):
    return text.startswith(prefix)


def score(scope, name):
    return scope.ctx.scores.get(name)


def expiring_within(scope, days, balance="points"):
    horizon = scope.today + dt.timedelta(days=int(days))
    lots = scope.ctx.expiring.get(balance, ())
    return sum((Decimal(amount) for when, amount in lots if when <= horizon), Decimal(0))


def _same_as_first(arg_types):
    return arg_types[0] if arg_types and arg_types[0] != T.NONE else T.NUMBER


def _numeric_result(arg_types):
    return T.MONEY if T.MONEY in arg_types else T.NUMBER


FUNCTIONS = (
    Function("weekday", (DATES,), T.NUMBER, weekday, "day of the week, 0 = Monday ... 6 = Sunday"),
    Function("month", (DATES,), T.NUMBER, month, "month of a date, 1-12"),
    Function("day", (DATES,), T.NUMBER, day, "day of the month, 1-31"),
    Function("year", (DATES,), T.NUMBER, year, "year of a date"),
    Function("hour", (frozenset({T.DATETIME}),), T.NUMBER, hour, "hour of a time, 0-23, in the program's timezone"),
    Function("days_since", (DATES,), T.NUMBER, days_since, "whole days from a date until today", needs_context=True),
    Function("days_until", (DATES,), T.NUMBER, days_until, "whole days from today until a date", needs_context=True),
    Function(
        "between",
        (ANYT, ANYT, ANYT),
        T.BOOL,
        between,
        "true when low <= value <= high (both ends included)",
        null_safe=True,
    ),
    Function(
        "is_birthday",
        (frozenset({T.DATE}),),
        T.BOOL,
        is_birthday,
        "true on that birthday (29 Feb counts on 28 Feb in other years)",
        needs_context=True,
        null_safe=True,
    ),
    Function("min", (NUMS, NUMS), _numeric_result, minimum, "the smallest value", variadic=True, null_safe=True),
    Function("max", (NUMS, NUMS), _numeric_result, maximum, "the largest value", variadic=True, null_safe=True),
    Function("round", (NUMS, frozenset({T.NUMBER})), _same_as_first, round_, "round half up", optional=1),
    Function("floor", (NUMS,), _same_as_first, floor, "round down to a whole number"),
    Function("ceil", (NUMS,), _same_as_first, ceil, "round up to a whole number"),
    Function("abs", (NUMS,), _same_as_first, absolute, "absolute value"),
    Function(
        "number", (NUMS,), T.NUMBER, number, "a money amount as a plain number, e.g. number(floor(net_amount / 100))"
    ),
    Function("lower", (TEXTS,), T.TEXT, lower, "text in lower case"),
    Function("upper", (TEXTS,), T.TEXT, upper, "text in upper case"),
    Function("contains", (TEXTS, TEXTS), T.BOOL, contains, "true when the text contains the part"),
    Function("starts_with", (TEXTS, TEXTS), T.BOOL, starts_with, "true when the text starts with the prefix"),
    Function(
        "score",
        (TEXTS,),
        T.NUMBER,  # refined by the checker from the score's declared type
        score,
        'a score from a scoring model, e.g. score("churn_risk")',
        needs_context=True,
    ),
    Function(
        "expiring_within",
        (frozenset({T.NUMBER}), TEXTS),
        T.NUMBER,
        expiring_within,
        "points (or another balance) that expire within N days",
        optional=1,
        needs_context=True,
    ),
)

CHANNELS = (
    Channel("console", "print to the engine's log"),
    Channel("email", "e-mail to the member's address", subject=True),
    Channel("sms", "text message to the member's phone"),
    Channel("push", "app push notification", subject=True),
    Channel("webhook", "HTTP POST to the program's webhook"),
)

SCORES = (
    Score("rfm_score", T.NUMBER, "RFM score, 3 (worst) to 15 (best)"),
    Score("rfm_segment", T.TEXT, "RFM segment name, e.g. 'champions', 'at_risk'"),
    Score("churn_risk", T.NUMBER, "probability of churn, 0 to 1"),
    Score("clv", T.MONEY, "predicted customer lifetime value"),
)


def register_builtins(schema: Schema) -> None:
    for fn in FUNCTIONS:
        schema.add_function(fn)
    for channel in CHANNELS:
        schema.add_channel(channel)
    for sc in SCORES:
        schema.add_score(sc)
