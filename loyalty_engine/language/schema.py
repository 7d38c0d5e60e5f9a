"""The schema the engine publishes: every name a rule file may use, with its type.

The checker resolves names against it and the compiler reads how to load them.
Plugins (and programs, through ``event`` and ``member fields`` declarations)
extend a copy of the default schema; the defaults are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen

from . import types as T

EVENT_COMMON = {
    "id": T.TEXT,
    "type": T.TEXT,
    "member": T.TEXT,
    "at": T.DATETIME,
    "channel": T.TEXT,
    "store": T.TEXT,
}
PURCHASE_FIELDS = {
    **EVENT_COMMON,
    "payment": T.TEXT,
    "currency": T.TEXT,
    "amount": T.MONEY,
    "discount": T.MONEY,
    "net_amount": T.MONEY,
    "items": T.ITEMS,
}
REFUND_FIELDS = {**PURCHASE_FIELDS, "original": T.TEXT}

ITEM_FIELDS = {
    "sku": T.TEXT,
    "name": T.TEXT,
    "category": T.TEXT,
    "brand": T.TEXT,
    "quantity": T.NUMBER,
    "unit_price": T.MONEY,
    "discount": T.MONEY,
    "amount": T.MONEY,
}
NON_NULL_ITEM_FIELDS = frozenset({"quantity", "unit_price", "discount", "amount"})
# Fields the Event class holds itself; any other event field lives in Event.attributes.
CORE_EVENT_FIELDS = frozenset({*PURCHASE_FIELDS, *REFUND_FIELDS, "referrer"})
NON_NULL_EVENT_FIELDS = frozenset({"id", "type", "member", "at", "amount", "discount", "net_amount", "items"})

MEMBER_FIELDS = {
    "id": T.TEXT,
    "name": T.TEXT,
    "tier": T.TEXT,
    "joined": T.DATE,
    "birthday": T.DATE,
    "email": T.TEXT,
    "phone": T.TEXT,
}
# Facts about the member that come from stored history, supplied by the context.
MEMBER_CONTEXT_FIELDS = {
    "last_purchase": T.DATETIME,
    "first_purchase": T.DATETIME,
    "tier_since": T.DATE,
    "tier_expires": T.DATE,
}

STATS = {
    "spend": T.MONEY,
    "visits": T.NUMBER,
    "purchases": T.NUMBER,
    "nights": T.NUMBER,
    "refunds": T.MONEY,
    "points_earned": T.NUMBER,
    "points_redeemed": T.NUMBER,
}

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@frozen
class Function:
    """A function rule files may call.

    ``params`` holds, per parameter, the set of accepted types (``T.ANY`` for any);
    ``optional`` how many trailing parameters may be left out; ``returns`` the
    result type, or a callable deciding it from the argument types.
    ``impl`` is called with the argument values (``None`` propagates unless the
    function says otherwise); with ``needs_context`` it first gets the evaluation
    context (today, member, scores...).
    """

    name: str
    params: tuple[frozenset[str], ...]
    returns: str | Callable[[list[str]], str]
    impl: Callable[..., Any]
    doc: str = ""
    optional: int = 0
    variadic: bool = False
    needs_context: bool = False
    null_safe: bool = False  # impl handles None arguments itself

    def result_type(self, arg_types: list[str]) -> str:
        return self.returns(arg_types) if callable(self.returns) else self.returns


@frozen
class Channel:
    name: str
    doc: str = ""
    subject: bool = False  # whether messages on it may carry a subject


@frozen
class RewardType:
    """A custom effect: ``reward NAME(arg: value, ...)``."""

    name: str
    params: dict[str, str]  # argument name -> type
    required: frozenset[str] = frozenset()
    doc: str = ""
    provider: str = "core"


@frozen
class Score:
    name: str
    type: str
    doc: str = ""
    provider: str = "core"


@define
class Schema:
    event_types: dict[str, dict[str, str]] = field(factory=dict)
    item_fields: dict[str, str] = field(factory=lambda: dict(ITEM_FIELDS))
    member_fields: dict[str, str] = field(factory=lambda: dict(MEMBER_FIELDS))
    member_context_fields: dict[str, str] = field(factory=lambda: dict(MEMBER_CONTEXT_FIELDS))
    member_attributes: dict[str, str] = field(factory=dict)
    stats: dict[str, str] = field(factory=lambda: dict(STATS))
    functions: dict[str, Function] = field(factory=dict)
    channels: dict[str, Channel] = field(factory=dict)
    reward_types: dict[str, RewardType] = field(factory=dict)
    scores: dict[str, Score] = field(factory=dict)
    rounding_modes: tuple[str, ...] = ("floor", "ceiling", "half_up", "half_even", "half_down", "down", "up")

    def copy(self) -> Schema:
        return Schema(
            event_types={k: dict(v) for k, v in self.event_types.items()},
            item_fields=dict(self.item_fields),
            member_fields=dict(self.member_fields),
            member_context_fields=dict(self.member_context_fields),
            member_attributes=dict(self.member_attributes),
            stats=dict(self.stats),
            functions=dict(self.functions),
            channels=dict(self.channels),
            reward_types=dict(self.reward_types),
            scores=dict(self.scores),
            rounding_modes=self.rounding_modes,
        )

    # registration, used by the defaults and (later) by plugins
    def add_function(self, fn: Function) -> None:
        self.functions[fn.name] = fn

    def add_channel(self, channel: Channel) -> None:
        self.channels[channel.name] = channel

    def add_reward_type(self, reward: RewardType) -> None:
        self.reward_types[reward.name] = reward

    def add_score(self, score: Score) -> None:
        self.scores[score.name] = score

    def add_event_type(self, name: str, fields: dict[str, str]) -> None:
        merged = dict(EVENT_COMMON)
        merged.update(self.event_types.get(name, {}))
        merged.update(fields)
        self.event_types[name] = merged


def default_schema() -> Schema:
    """The schema with the built-in event types, functions, channels and scores."""
    from .builtins import register_builtins

    schema = Schema()
    schema.event_types = {
        "purchase": dict(PURCHASE_FIELDS),
        "refund": dict(REFUND_FIELDS),
        "signup": {**EVENT_COMMON, "referrer": T.TEXT},
        "visit": dict(EVENT_COMMON),
    }
    register_builtins(schema)
    return schema
