"""Frozen syntax-tree nodes built from the Lark parse tree.

Every node keeps a :class:`Span` so that the checker, the compiler and the
explanations can point back at the rule file. Nodes compare by identity, which
lets later stages key side tables on them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Union

from attrs import field, frozen


@frozen
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@frozen(eq=False)
class Ident:
    name: str
    span: Span


# ------------------------------------------------------------------ expressions


@frozen(eq=False)
class Literal:
    value: Decimal | str | bool | dt.date | None
    kind: str  # "number", "percent", "text", "date", "bool", "none"
    span: Span


@frozen(eq=False)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span


@frozen(eq=False)
class Path:
    parts: tuple[Ident, ...]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(p.name for p in self.parts)


@frozen(eq=False)
class Call:
    name: Ident
    args: tuple[Expr, ...]
    span: Span


@frozen(eq=False)
class Unary:
    op: str  # "neg" | "not"
    operand: Expr
    span: Span


@frozen(eq=False)
class Binary:
    op: str  # + - * / == != < <= > >= and or in notin
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@frozen(eq=False)
class ItemTest:
    """``any item where ...`` / ``all items where ...``."""

    quantifier: str  # "any" | "all"
    condition: Expr
    span: Span


@frozen(eq=False)
class CountItems:
    what: str  # "items" (sum of quantities) | "lines" (number of lines)
    condition: Expr | None
    span: Span


@frozen(eq=False)
class SumItems:
    value: Expr  # evaluated per matching line, e.g. amount or floor(unit_price) * quantity
    condition: Expr | None
    span: Span


@frozen
class Window:
    kind: str  # "rolling" | "calendar" | "lifetime"
    amount: int = 0
    unit: str = ""  # day | week | month | year

    @property
    def key(self) -> str:
        if self.kind == "rolling":
            return f"last_{self.amount}_{self.unit}s"
        if self.kind == "calendar":
            return f"this_{self.unit}"
        return "lifetime"

    def describe(self) -> str:
        if self.kind == "rolling":
            return f"the last {self.amount} {self.unit}{'s' if self.amount != 1 else ''}"
        if self.kind == "calendar":
            return f"this calendar {self.unit}"
        return "the member's lifetime"


@frozen(eq=False)
class Stat:
    name: Ident
    window: Window
    span: Span

    @property
    def key(self) -> str:
        return f"{self.name.name}:{self.window.key}"


Expr = Union[Literal, ListExpr, Path, Call, Unary, Binary, ItemTest, CountItems, SumItems, Stat]


@frozen(eq=False)
class Template:
    """A message text; ``parts`` alternates literal text and ``{...}`` expressions."""

    text: str
    parts: tuple[str | Expr, ...]
    span: Span


# ------------------------------------------------------------------ actions


@frozen(eq=False)
class Award:
    """``award AMOUNT UNIT [per ...] [up to N]``.

    ``rate`` is None for a fixed bonus; "money" (``per N CNY of SOURCE``),
    "item" (``per item where ...``) or "percent" (``N% of SOURCE as UNIT``)
    for earn that tier and rule multipliers apply to.
    """

    amount: Expr
    unit: Ident
    rate: str | None
    per: Decimal | None  # the N of "per N CNY"
    currency: Ident | None
    source: Expr | None  # money amount for "money"/"percent" rates
    items_filter: Expr | None  # filter for "of items where ..." or "per item where ..."
    items_source: bool
    up_to: int | None
    span: Span


@frozen(eq=False)
class Multiply:
    unit: Ident
    factor: Expr
    span: Span


@frozen(eq=False)
class Cap:
    unit: Ident
    amount: int
    period: str  # transaction | day | week | month | year
    span: Span


@frozen(eq=False)
class IssueCoupon:
    coupon: Ident
    span: Span


@frozen(eq=False)
class Send:
    channel: Ident
    body: Template
    subject: Template | None
    span: Span


@frozen(eq=False)
class SetTier:
    tier: Ident
    span: Span


@frozen(eq=False)
class Reward:
    reward_type: Ident
    args: tuple[tuple[Ident, Expr], ...]
    span: Span


Action = Union[Award, Multiply, Cap, IssueCoupon, Send, SetTier, Reward]


# ------------------------------------------------------------------ rule modifiers


@frozen(eq=False)
class Limit:
    times: int
    period: str  # day|week|month|year (calendar), member (ever), event, or "rolling"
    days: int  # rolling window length in days (0 unless period == "rolling")
    span: Span

    def describe(self) -> str:
        count = "once" if self.times == 1 else f"{self.times} times"
        if self.period == "rolling":
            return f"{count} per {self.days} days"
        if self.period == "member":
            return f"{count} per member"
        return f"{count} per {self.period}"


@frozen(eq=False)
class Budget:
    amount: int
    unit: Ident  # a balance name, or "coupons"
    span: Span


# ------------------------------------------------------------------ declarations


@frozen(eq=False)
class BalanceDecl:
    name: Ident
    money: bool
    span: Span


@frozen(eq=False)
class ExpiryPolicy:
    balance: Ident
    kind: str  # "after" | "year_end" | "never"
    amount: int
    unit: str
    after: str  # earning | last activity | joining
    span: Span


@frozen(eq=False)
class PendingPolicy:
    balance: Ident
    days: int
    span: Span


@frozen(eq=False)
class ProgramHeader:
    name: str
    currency: Ident | None
    timezone: tuple[str, Span] | None
    rounding: Ident | None
    balances: tuple[BalanceDecl, ...]
    expiries: tuple[ExpiryPolicy, ...]
    pendings: tuple[PendingPolicy, ...]
    span: Span
    policies: tuple[Policy, ...] = ()


@frozen(eq=False)
class Policy:
    """``points may go negative``, ``points can be transferred`` or ``refunds ... bonuses``."""

    kind: str  # "negative" | "transfer" | "refunds"
    balance: Ident | None
    value: str  # for refunds: "keep" | "reverse" | "full"
    span: Span


@frozen(eq=False)
class TierLevel:
    name: Ident
    threshold: Decimal
    multiplier: Decimal | None
    span: Span


@frozen(eq=False)
class TierReview:
    every_months: int
    grace_months: int
    span: Span


@frozen(eq=False)
class Tiers:
    metric: Ident
    window: Window
    levels: tuple[TierLevel, ...]
    review: TierReview | None
    span: Span


@frozen(eq=False)
class Rule:
    name: str
    event: Ident
    condition: Expr | None
    actions: tuple[Action, ...]
    limits: tuple[Limit, ...]
    budgets: tuple[Budget, ...]
    priority: int
    valid_from: dt.date | None
    valid_to: dt.date | None
    group: tuple[str, Span] | None
    campaign: str | None
    span: Span
    name_span: Span


@frozen(eq=False)
class Campaign:
    name: str
    valid_from: dt.date | None
    valid_to: dt.date | None
    budgets: tuple[Budget, ...]
    rules: tuple[Rule, ...]
    span: Span


@frozen(eq=False)
class GroupDecl:
    name: str
    pick: str  # "best" | "first"
    span: Span


@frozen(eq=False)
class CouponTemplate:
    code: Ident
    title: str | None
    discount_kind: str | None  # "percent" | "amount" | "free_item"
    discount_value: Decimal | str | None
    valid_days: int | None
    valid_until: dt.date | None
    min_spend: Decimal | None
    categories: tuple[str, ...]
    per_member: int | None
    total: int | None
    span: Span


@frozen(eq=False)
class Trigger:
    name: str
    schedule: str  # daily | weekly | monthly
    schedule_arg: Ident | int | None
    condition: Expr | None
    actions: tuple[Action, ...]
    limits: tuple[Limit, ...]
    priority: int
    valid_from: dt.date | None
    valid_to: dt.date | None
    span: Span
    name_span: Span


@frozen(eq=False)
class FieldDecl:
    name: Ident
    type_name: Ident
    element: Ident | None  # for "list of text"
    span: Span


@frozen(eq=False)
class EventDecl:
    name: Ident
    fields: tuple[FieldDecl, ...]
    span: Span


@frozen(eq=False)
class MemberFields:
    fields: tuple[FieldDecl, ...]
    span: Span


@frozen(eq=False)
class Include:
    path: str
    span: Span


TopLevel = Union[
    ProgramHeader, Tiers, Rule, Campaign, GroupDecl, CouponTemplate, Trigger, EventDecl, MemberFields, Include
]


@frozen(eq=False)
class Module:
    """One parsed file."""

    path: str
    items: tuple[TopLevel, ...] = field(factory=tuple)
