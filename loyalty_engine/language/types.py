"""The checker's types. Numbers are Decimal at run time; money is a number with a currency."""

from __future__ import annotations

NUMBER = "number"
MONEY = "money"
TEXT = "text"
BOOL = "boolean"
DATE = "date"
DATETIME = "datetime"
NONE = "none"
ANY = "any"  # unknown after an error: accepted everywhere so one mistake reports once
ITEMS = "items"

NUMERIC = frozenset({NUMBER, MONEY})
SCALARS = (NUMBER, MONEY, TEXT, BOOL, DATE, DATETIME)

TYPE_NAMES = {
    "number": NUMBER,
    "money": MONEY,
    "amount": MONEY,
    "text": TEXT,
    "boolean": BOOL,
    "bool": BOOL,
    "date": DATE,
    "datetime": DATETIME,
}


def list_of(element: str) -> str:
    return f"list of {element}"


def element_of(t: str) -> str | None:
    return t[len("list of ") :] if t.startswith("list of ") else None


def is_numeric(t: str) -> bool:
    return t in NUMERIC or t == ANY


def comparable(a: str, b: str) -> bool:
    if ANY in (a, b) or NONE in (a, b):
        return True
    if a in NUMERIC and b in NUMERIC:
        return True
    if {a, b} <= {DATE, DATETIME}:
        return True
    return a == b


def arithmetic(op: str, a: str, b: str) -> str | None:
    """Result type of ``a op b``, or None when the operation makes no sense."""
    if ANY in (a, b):
        return ANY
    if op in "+-" and a in (DATE, DATETIME) and b == NUMBER:
        return a  # date + days
    if op == "-" and a in (DATE, DATETIME) and b in (DATE, DATETIME):
        return NUMBER  # days between
    if a not in NUMERIC or b not in NUMERIC:
        return None
    if op in "+-":
        return MONEY if MONEY in (a, b) else NUMBER
    if op == "*":
        return MONEY if MONEY in (a, b) else NUMBER
    if op == "/":
        if a == MONEY and b == MONEY:
            return NUMBER
        return a
    return None
