"""The schema the engine publishes: every name a rule file may use, with its type.

The checker resolves names against it and the compiler reads how to load them.
Plugins (and programs, through ``event`` and ``member fields`` declarations)
extend a copy of the default schema; the defaults are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    provider: str = "core"

    def result_type(self, arg_types: list[str]) -> str:
        return self.returns(arg_types) if callable(self.returns) else self.returns


@frozen
class Channel:
    """A message channel: ``send NAME "text"`` in a rule file queues a message on it.

    ``address`` names the member field that holds the address (``"email"``,
    ``"phone"``; None when the channel finds the member itself). ``factory``
    builds the sender from the channel's configuration (a mapping, e.g. a
    ``[channels.NAME]`` table of ``loyalty.toml``); the sender's
    ``send(message)`` raises to have the message retried. ``needs`` lists the
    configuration keys without which the channel cannot be built.
    """

    name: str
    doc: str = ""
    subject: bool = False  # whether messages on it may carry a subject
    address: str | None = None
    factory: Callable[[Mapping[str, Any]], Any] | None = field(default=None, eq=False, repr=False)
    needs: tuple[str, ...] = ()
    provider: str = "core"


@frozen
class RewardType:
    """An effect a rule can have, with how it is applied to the store and reversed on refund.

    Third-party types are used as ``reward NAME(arg: value, ...)``: ``params``
    maps each argument to its type (``number``, ``money``, ``text``,
    ``boolean``, ``date``) and ``required`` lists those that must be given.
    ``apply(ctx)`` runs inside the event's transaction with a
    :class:`~loyalty_engine.RewardContext` (``ctx.args`` holds the evaluated
    arguments) and returns the amount granted in ``unit`` (or None); the engine
    journals it. On a refund the engine journals the reversal of the returned
    share and then calls ``reverse(ctx, entry, amount)`` when given. The
    built-in effects (points, coupon, tier, message) are reached through their
    own statements, named by ``keyword``.
    """

    name: str
    params: dict[str, str]  # argument name -> type
    required: frozenset[str] = frozenset()
    doc: str = ""
    provider: str = "core"
    apply: Callable[[Any], Any] | None = field(default=None, eq=False, repr=False)
    reverse: Callable[[Any, Any, Any], Any] | None = field(default=None, eq=False, repr=False)
    describe: Callable[[dict[str, Any]], str] | None = field(default=None, eq=False, repr=False)
    unit: str | None = None  # what the journalled amount counts ("miles"); None: money in the program currency
    keyword: str | None = None  # the statement of a built-in effect ("award", "issue coupon" ...)


@frozen
class ScoringModel:
    """A score rule files read as ``score("NAME")``.

    ``type`` is the value's type (number, money or text); ``reads`` lists the
    member facts the model uses (see :class:`~loyalty_engine.MemberFacts`);
    ``score(facts)`` computes one member's value and ``score_many(facts_list)``,
    when given, many at once for batch work.
    """

    name: str
    type: str
    doc: str = ""
    provider: str = "core"
    score: Callable[[Any], Any] | None = field(default=None, eq=False, repr=False)
    score_many: Callable[[list[Any]], list[Any]] | None = field(default=None, eq=False, repr=False)
    reads: tuple[str, ...] = ()


Score = ScoringModel  # the name the checker has always used


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
    scores: dict[str, ScoringModel] = field(factory=dict)
    rounding_modes: tuple[str, ...] = ("floor", "ceiling", "half_up", "half_even", "half_down", "down", "up")
    plugins: Any = field(default=None, eq=False, repr=False)  # the Plugins this schema was built from

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
            plugins=self.plugins,
        )

    # registration, used by the defaults and (later) by plugins
    def add_function(self, fn: Function) -> None:
        self.functions[fn.name] = fn

    def add_channel(self, channel: Channel) -> None:
        self.channels[channel.name] = channel

    def add_reward_type(self, reward: RewardType) -> None:
        self.reward_types[reward.name] = reward

    def add_score(self, score: ScoringModel) -> None:
        self.scores[score.name] = score

    def add_event_type(self, name: str, fields: dict[str, str]) -> None:
        merged = dict(EVENT_COMMON)
        merged.update(self.event_types.get(name, {}))
        merged.update(fields)
        self.event_types[name] = merged


def default_schema() -> Schema:
    """The schema of the built-ins and every installed plugin (see :mod:`loyalty_engine.plugins`)."""
    from ..plugins import get_plugins

    return get_plugins().schema()
