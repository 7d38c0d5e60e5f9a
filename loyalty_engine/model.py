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


@frozen
class LineItem:
    """One cart line. ``amount`` is ``unit_price * quantity - discount`` unless given."""

    sku: str
    quantity: Decimal = field(default=Decimal(1), converter=_decimal, validator=_non_negative)
    unit_price: Decimal = field(default=ZERO, converter=_decimal, validator=_non_negative)
    category: str | None = None
    name: str | None = None
    brand: str | None = None
    discount: Decimal = field(default=ZERO, converter=_decimal, validator=_non_negative)
    amount: Decimal | None = field(default=None, converter=lambda v: None if v is None else _decimal(v))

    def __attrs_post_init__(self) -> None:
        if self.amount is None:
            object.__setattr__(self, "amount", self.unit_price * self.quantity - self.discount)


@frozen
class Event:
    """Something that happened to a member: a purchase, refund, signup, visit or a custom type.

    For purchases and refunds ``amount`` defaults to the sum of the line amounts,
    ``net_amount`` to ``amount - discount``. Custom fields live in ``attributes``.
    """

    id: str
    type: str
    member: str
    at: dt.datetime = field(validator=_aware)
    channel: str | None = None
    store: str | None = None
    payment: str | None = None
    currency: str | None = None
    items: tuple[LineItem, ...] = field(default=(), converter=tuple)
    amount: Decimal | None = field(default=None, converter=lambda v: None if v is None else _decimal(v))
    discount: Decimal = field(default=ZERO, converter=_decimal)
    net_amount: Decimal | None = field(default=None, converter=lambda v: None if v is None else _decimal(v))
    original: str | None = None
    referrer: str | None = None
    attributes: Mapping[str, Any] = field(default=EMPTY, converter=lambda v: MappingProxyType(dict(v)))

    def __attrs_post_init__(self) -> None:
        if self.amount is None:
            total = ZERO
            for item in self.items:
                total += item.amount
            object.__setattr__(self, "amount", total)
        if self.net_amount is None:
            object.__setattr__(self, "net_amount", self.amount - self.discount)


@frozen
class Member:
    id: str
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
