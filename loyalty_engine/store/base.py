"""What the engine needs from a store: records and the ``Store`` protocol.

The engine never writes SQL. It opens one write transaction per event with
:meth:`Store.transaction` and calls the methods below inside it; a store for
another database (PostgreSQL, say) implements the same protocol.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Protocol

from attrs import define, field, frozen

from ..model import Member


@define
class MemberRecord:
    """A member and the state the store keeps about them (mutable inside a transaction)."""

    member: Member
    created_at: dt.datetime
    tier_since: dt.date | None = None
    tier_review: dt.date | None = None
    grace_until: dt.date | None = None
    first_purchase: dt.datetime | None = None
    last_purchase: dt.datetime | None = None
    last_activity: dt.datetime | None = None
    balances: dict[str, Decimal] = field(factory=dict)
    debts: dict[str, Decimal] = field(factory=dict)
    lifetime: dict[str, Decimal] = field(factory=dict)
    stored: bool = False  # False until the first save
    loaded: tuple | None = field(default=None, eq=False, repr=False)  # the stored row, to write only what changed


@define
class LedgerEntry:
    """One append-only ledger line. ``amount`` is signed; ``id`` is set by the store when it is added."""

    member: str
    balance: str
    kind: str  # opening earn redeem expire reverse adjust transfer_in transfer_out debt
    amount: Decimal
    at: dt.datetime
    day: dt.date
    event: str | None = None
    rule: str | None = None
    program: str | None = None
    lines: tuple[Decimal, ...] | None = None  # weight per cart line the entry was earned on
    reverses: int | None = None
    reason: str | None = None
    id: int | None = None
    shortfall: Decimal | None = None  # what a debit could not take (recorded as the member's debt)


@define
class RewardEntry:
    """One append-only line of the reward journal: what a plugin reward type granted (or took back).

    ``amount`` is signed, in the reward type's ``unit``; ``args`` are the rule's
    evaluated arguments; ``lines`` the weight per cart line it was earned on
    (None: the whole basket); ``reverses`` the entry a refund takes back.
    """

    reward: str
    member: str
    at: dt.datetime
    amount: Decimal | None
    unit: str | None = None
    event: str | None = None
    rule: str | None = None
    program: str | None = None
    args: dict[str, Any] = field(factory=dict)
    lines: tuple[Decimal, ...] | None = None
    reverses: int | None = None
    id: int | None = None


@define
class Lot:
    """What is left of one positive entry: spent and expired first-in first-out."""

    id: int
    member: str
    balance: str
    amount: Decimal
    remaining: Decimal
    earned_on: dt.date
    releases_on: dt.date | None = None
    expires_on: dt.date | None = None


@frozen
class StoredEvent:
    """A processed event or operation, keyed by its id, with the hash of its payload."""

    id: str
    kind: str
    member: str | None
    hash: str
    at: dt.datetime | None
    status: str  # applied | parked
    payload: str
    outcome: str
    program: str | None = None
    original: str | None = None


@define
class CouponRecord:
    code: str
    template: str
    member: str
    status: str  # issued | reserved | redeemed | void
    issued_at: dt.datetime
    valid_until: dt.date | None = None
    event: str | None = None
    rule: str | None = None
    program: str | None = None
    reserved_by: str | None = None
    reserved_until: dt.datetime | None = None
    redeemed_at: dt.datetime | None = None
    redeemed_ref: str | None = None
    discount: Decimal | None = None


@frozen
class Message:
    """A message waiting in (or delivered from) the outbox."""

    dedupe_key: str
    member: str | None
    channel: str
    body: str
    source: str
    created_at: dt.datetime
    subject: str | None = None
    address: str | None = None
    id: int | None = None
    attempts: int = 0
    status: str = "pending"
    last_error: str | None = None


# Activity statistics kept per event and day; money and points are stored scaled.
ACTIVITY_STATS = ("spend", "visits", "purchases", "nights", "refunds", "points_earned", "points_redeemed")


class Store(Protocol):
    """The storage the engine depends on. All writes happen inside :meth:`transaction`."""

    def transaction(self) -> AbstractContextManager[Any]:
        """One atomic write transaction (nested calls become savepoints)."""

    def batch(self) -> AbstractContextManager[Any]:
        """Group many transactions into one commit; each inner transaction can still fail alone."""

    # programs
    def ensure_program(self, version: str, name: str, sources: dict[str, str]) -> None: ...

    # events (idempotency)
    def get_event(self, event_id: str) -> StoredEvent | None: ...
    def put_event(self, event: StoredEvent) -> None: ...
    def parked_refunds(self, original: str) -> list[StoredEvent]: ...

    # members
    def load_member(self, member_id: str) -> MemberRecord | None: ...
    def save_member(self, record: MemberRecord) -> None: ...
    def iter_members(self, after: str | None, limit: int) -> list[MemberRecord]: ...
    def members_inactive_since(self, cutoff: dt.datetime, after: str | None, limit: int) -> list[str]: ...
    def members_due_review(self, day: dt.date, after: str | None, limit: int) -> list[str]: ...
    def count_members(self) -> int: ...

    # ledger and lots
    def add_entries(self, entries: Sequence[LedgerEntry]) -> list[int]: ...
    def entries_for_event(self, event_id: str) -> list[LedgerEntry]: ...
    def reversed_amounts(self, entry_ids: Sequence[int]) -> dict[int, Decimal]: ...
    def ledger(self, member_id: str, limit: int | None = None) -> list[LedgerEntry]: ...
    def ledger_sums(self, member_id: str | None = None) -> dict[tuple[str, str], Decimal]: ...
    def open_lots(self, member_id: str, balance: str) -> list[Lot]: ...
    def open_lots_for(self, member_ids: Sequence[str], expiring_by: dt.date | None = None) -> dict[str, list[Lot]]: ...
    def add_lots(self, lots: Sequence[Lot]) -> None: ...
    def update_lots(self, lots: Sequence[Lot], moves: Sequence[tuple[int, int, Decimal]]) -> None: ...
    def lots_expiring(self, day: dt.date, limit: int) -> list[Lot]: ...
    def earned_since(self, member_id: str, balance: str, day: dt.date) -> Decimal: ...
    def expired_from(self, lot_id: int) -> Decimal: ...

    # history, statistics, budgets
    def add_activity(self, member_id: str, day: dt.date, event: str | None, stats: dict[str, Decimal]) -> None: ...
    def activity_sums(self, member_id: str, starts: Sequence[dt.date]) -> list[dict[str, Decimal]]: ...
    def activity_sums_for(
        self, member_ids: Sequence[str], starts: Sequence[dt.date]
    ) -> dict[str, list[dict[str, Decimal]]]: ...
    def firings(self, member_id: str, keys: Iterable[str]) -> dict[str, list[dt.datetime]]: ...
    def firings_for(self, member_ids: Sequence[str], keys: Iterable[str]) -> dict[str, dict[str, list]]: ...
    def add_firing(self, member_id: str, key: str, at: dt.datetime, event: str | None) -> None: ...
    def void_firings(self, event_id: str) -> None: ...
    def budgets(self, keys: Iterable[str]) -> dict[str, Decimal]: ...
    def add_budget(self, key: str, amount: Decimal) -> None: ...
    def returns(self, purchase_id: str) -> dict[int, Decimal]: ...
    def add_returns(self, purchase_id: str, refund_id: str, lines: dict[int, Decimal]) -> None: ...

    # the reward journal (plugin reward types)
    def add_reward_entry(self, entry: RewardEntry) -> int: ...
    def reward_entries_for_event(self, event_id: str) -> list[RewardEntry]: ...
    def reward_reversed(self, entry_ids: Sequence[int]) -> dict[int, Decimal]: ...
    def reward_totals(self, member_id: str) -> dict[tuple[str, str | None], Decimal]: ...

    # coupons and tiers
    def add_coupon(self, coupon: CouponRecord) -> None: ...
    def get_coupon(self, code: str) -> CouponRecord | None: ...
    def update_coupon(self, coupon: CouponRecord) -> None: ...
    def coupons(self, member_id: str) -> list[CouponRecord]: ...
    def coupons_for_event(self, event_id: str) -> list[CouponRecord]: ...
    def coupon_count(self, template: str, member_id: str | None = None) -> int: ...
    def add_tier_change(
        self, member_id: str, from_tier: str | None, to_tier: str, at: dt.datetime, reason: str, event: str | None
    ) -> None: ...
    def tier_history(self, member_id: str) -> list[dict[str, Any]]: ...

    # outbox
    def add_message(self, message: Message) -> bool: ...
    def claim_messages(
        self, now: dt.datetime, lease: dt.timedelta, limit: int, claim: str, channels: Sequence[str]
    ) -> list[Message]: ...
    def mark_sent(self, message_id: int, claim: str, at: dt.datetime) -> bool: ...
    def mark_failed(
        self, message_id: int, claim: str, error: str, retry_at: dt.datetime | None, dead: bool
    ) -> None: ...
    def outbox_counts(self) -> dict[str, int]: ...
    def pending_channels(self) -> dict[str, int]: ...

    # scheduled runs
    def schedule_progress(self, day: dt.date) -> tuple[str | None, bool]: ...
    def set_schedule_progress(self, day: dt.date, last_member: str | None, done: bool) -> None: ...

    def close(self) -> None: ...


def iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def from_date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def from_datetime(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
