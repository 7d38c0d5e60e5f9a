"""The domain: members, events, line items, and what the engine knows about a member.

Amounts are Decimal, times timezone-aware. Build these from JSON with
:mod:`loyalty_engine.wire`, which validates at the edge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs
from attrs import field, frozen

ZERO = Decimal(0)
EMPTY: Mapping = MappingProxyType({})


def _decimal(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _aware(instance, attribute, value) -> None:
    if value is not None and (not isinstance(value, dt.datetime) or value.utcoffset() is None):
        raise ValueError(f"'{attribute.name}' must be a timezone-aware datetime (got {value!r})")


def _non_negative(instance, attribute, value) -> None:
    if value is not None and value < 0:
        raise ValueError(f"'{attribute.name}' must be >= 0 (got {value})")


# Bounds on what a till may send. Amounts are computed with 28 significant digits
# (Decimal's default context); below these, a tier multiplier, a high earn rate and a
# day's sum still fit, and quantities fit SQLite's 64-bit integers. Above them the
# input is a typo or an attack, refused at the edge instead of failing deep in a rule.
MAX_AMOUNT = Decimal(10) ** 15
MAX_QUANTITY = Decimal(10) ** 9


def _below(limit: Decimal):
    def check(instance, attribute, value) -> None:
        if value is not None and abs(value) >= limit:
            raise ValueError(f"'{attribute.name}' must be below {limit:,.0f} (got {value})")

    return check


_BELOW_AMOUNT = _below(MAX_AMOUNT)
_BELOW_QUANTITY = _below(MAX_QUANTITY)


def _not_blank(instance, attribute, value) -> None:
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"'{attribute.name}' must not be empty")


@frozen
class LineItem:
    """One cart line. ``amount`` is ``unit_price * quantity - discount`` unless given."""

    sku: str
    quantity: Decimal = field(default=Decimal(1), converter=_decimal, validator=[_non_negative, _BELOW_QUANTITY])
    unit_price: Decimal = field(default=ZERO, converter=_decimal, validator=[_non_negative, _BELOW_AMOUNT])
    category: str | None = None
    name: str | None = None
    brand: str | None = None
    discount: Decimal = field(default=ZERO, converter=_decimal, validator=[_non_negative, _BELOW_AMOUNT])
    amount: Decimal | None = field(
        default=None, converter=lambda v: None if v is None else _decimal(v), validator=_BELOW_AMOUNT
    )

    def __attrs_post_init__(self) -> None:
        if self.amount is None:
            object.__setattr__(self, "amount", self.unit_price * self.quantity - self.discount)
            _BELOW_AMOUNT(self, attrs.fields(LineItem).amount, self.amount)


@frozen
class Event:
    """Something that happened to a member: a purchase, refund, signup, visit or a custom type.

    For purchases and refunds ``amount`` defaults to the sum of the line amounts,
    ``net_amount`` to ``amount - discount``. Custom fields live in ``attributes``.
    """

    id: str
    type: str
    member: str = field(validator=_not_blank)
    at: dt.datetime = field(validator=_aware)
    channel: str | None = None
    store: str | None = None
    payment: str | None = None
    currency: str | None = None
    items: tuple[LineItem, ...] = field(default=(), converter=tuple)
    amount: Decimal | None = field(
        default=None, converter=lambda v: None if v is None else _decimal(v), validator=_BELOW_AMOUNT
    )
    discount: Decimal = field(default=ZERO, converter=_decimal, validator=[_non_negative, _BELOW_AMOUNT])
    net_amount: Decimal | None = field(
        default=None, converter=lambda v: None if v is None else _decimal(v), validator=_BELOW_AMOUNT
    )
    original: str | None = None
    referrer: str | None = None
    attributes: Mapping[str, Any] = field(default=EMPTY, converter=lambda v: MappingProxyType(dict(v)))

    def __attrs_post_init__(self) -> None:
        for item in self.items:  # lines built without their validators (the wire's fast path) are checked here
            if not (0 <= item.quantity < MAX_QUANTITY and 0 <= item.unit_price < MAX_AMOUNT) or not (
                -MAX_AMOUNT < item.amount < MAX_AMOUNT and 0 <= item.discount < MAX_AMOUNT
            ):
                raise ValueError(f"item '{item.sku}' has a quantity or an amount out of range")
        if self.amount is None:
            total = ZERO
            for item in self.items:
                total += item.amount
            object.__setattr__(self, "amount", total)
            _BELOW_AMOUNT(self, attrs.fields(Event).amount, total)
        if self.net_amount is None:
            object.__setattr__(self, "net_amount", self.amount - self.discount)
        if self.type == "purchase" and self.net_amount < 0 and self.amount >= 0:
            if self.discount > self.amount:
                raise ValueError(f"'discount' ({self.discount}) is more than the amount ({self.amount})")
            raise ValueError(f"'net_amount' must be >= 0 (got {self.net_amount})")


@frozen
class Member:
    id: str = field(validator=_not_blank)
    name: str | None = None
    joined: dt.date | None = None
    birthday: dt.date | None = None
    tier: str | None = None
    email: str | None = None
    phone: str | None = None
    attributes: Mapping[str, Any] = field(default=EMPTY, converter=lambda v: MappingProxyType(dict(v)))


@frozen
class MemberContext:
    """What the engine knows about a member when it evaluates an event.

    The store supplies it in production; for a standalone evaluation it can be
    given by hand. ``stats`` is keyed like ``"spend:last_12_months"``,
    ``"visits:this_year"`` or ``"purchases:lifetime"`` and describes history
    *before* the event. ``history`` maps ``"rule:NAME"`` / ``"trigger:NAME"``
    to the times it fired (for limits); ``budgets`` maps ``"rule:NAME"`` /
    ``"campaign:NAME"`` to what was already given; ``earned`` maps
    ``"points:day"`` etc. to what the member earned in the current period (for
    caps); ``expiring`` maps a balance to ``(date, amount)`` lots.
    """

    member: Member
    balances: Mapping[str, Decimal] = field(default=EMPTY)
    stats: Mapping[str, Decimal] = field(default=EMPTY)
    scores: Mapping[str, Any] = field(default=EMPTY)
    history: Mapping[str, tuple[dt.datetime, ...]] = field(default=EMPTY)
    budgets: Mapping[str, Decimal] = field(default=EMPTY)
    earned: Mapping[str, Decimal] = field(default=EMPTY)
    expiring: Mapping[str, tuple[tuple[dt.date, Decimal], ...]] = field(default=EMPTY)
    last_purchase: dt.datetime | None = None
    first_purchase: dt.datetime | None = None
    tier_since: dt.date | None = None
    tier_expires: dt.date | None = None

    @classmethod
    def for_member(cls, member: Member | str, **kwargs) -> MemberContext:
        if isinstance(member, str):
            member = Member(member)
        return cls(member, **kwargs)
