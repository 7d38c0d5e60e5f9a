"""The replay's state, in memory: a :class:`~loyalty_engine.store.base.Store` for one simulation.

The simulator drives the real engine code (evaluation, ledger, refunds, tiers,
coupons, the daily run) against this store, so a simulated history earns,
expires and reviews exactly as the SQLite store would. What differs is what is
*kept*: a simulation never looks back at a processed event unless a refund
will name it, so memory grows with the number of members, not of events:

- a purchase's payload, ledger lines, coupons and returns are kept only while a
  refund is still to come for it (``keep``: the purchases the history's refunds
  name, found by a quick first pass over the file); everything else is counted
  and forgotten;
- lots that no refund will point at are merged by (balance, release day,
  expiry day): spending and expiry see the same amounts on the same days;
- daily statistics are summed into running window totals and dropped once
  they fall out of the longest window; spent, expired and void coupons are
  only counted.

Every ledger line, coupon and tier change is also handed to a ``tally`` (the
report's accumulator) as it is written.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from decimal import Decimal

from ..store.base import (
    ACTIVITY_STATS,
    CouponRecord,
    LedgerEntry,
    Lot,
    MemberRecord,
    Message,
    RewardEntry,
    StoredEvent,
)
from .windows import Activity, scaled

ZERO = Decimal(0)
_NULL = nullcontext()


class NullTally:
    def entry(self, entry: LedgerEntry) -> None: ...
    def coupon_issued(self, coupon: CouponRecord) -> None: ...
    def coupon_status(self, coupon: CouponRecord, before: str) -> None: ...
    def tier_change(self, member: str, before: str | None, after: str, at: dt.datetime) -> None: ...
    def firing(self, member: str, key: str, at: dt.datetime) -> None: ...
    def message(self, message: Message) -> None: ...
    def reward(self, entry: RewardEntry) -> None: ...


class MemoryStore:
    """A Store kept in dicts, for replays: see the module documentation for what it keeps."""

    def __init__(self, keep: dict[str, int] | None = None, tally=None, cap_days: int = 366):
        self.keep = keep  # purchase id -> refunds still to come for it; None: keep every event
        self.tally = tally or NullTally()
        self.cap_days = cap_days  # the longest period of a cap (points earned per day are kept that long)
        self._track_earned = cap_days > 0
        self.members: dict[str, MemberRecord] = {}
        self._ids: list[str] | None = None
        self.seq = 0
        self.events: dict[str, StoredEvent] = {}
        self.parked: dict[str, list[str]] = {}
        self.entries: dict[str, list[LedgerEntry]] = {}
        self.reversed: dict[int, Decimal] = {}
        self.kept_entries: set[int] = set()
        self.lots: dict[str, dict[str, list[Lot]]] = {}
        self.expiry_heap: list[tuple[dt.date, int]] = []
        self.expiring: dict[int, Lot] = {}  # open lots with an expiry day, by id
        self.expired: dict[int, Decimal] = {}
        self._expire_ids: set[int] = set()
        self.activity: dict[str, Activity] = {}
        self.earned: dict[tuple[str, str], dict[dt.date, Decimal]] = {}
        self.firings_: dict[str, dict[str, list[tuple[dt.datetime, str | None]]]] = {}
        self.event_firings: dict[str, list[tuple[str, str]]] = {}
        self.budget: dict[str, Decimal] = {}
        self.rewards: dict[str, list[RewardEntry]] = {}  # kept purchases' plugin reward entries
        self.kept_rewards: set[int] = set()
        self.reward_back: dict[int, Decimal] = {}  # kept reward entry -> what refunds took back
        self.reward_sums: dict[str, dict[tuple[str, str | None], Decimal]] = {}  # member -> wallet totals
        self.returns_: dict[str, dict[int, Decimal]] = {}
        self.coupons_: dict[str, CouponRecord] = {}  # open coupons (issued, reserved)
        self._statuses: dict[str, str] = {}  # their status as last saved
        self.member_coupons: dict[str, list[CouponRecord]] = {}
        self.per_member: dict[tuple[str, str], int] = {}
        self.per_template: dict[str, int] = {}
        self.event_coupons: dict[str, list[str]] = {}
        self.schedule: dict[dt.date, tuple[str | None, bool]] = {}
        self.review_floor: dt.date | None = None  # no member has a review or grace end before this day
        self.activity_floor: dt.datetime | None = None  # no member with a balance was active before this
        self.wake = None  # (record, day) -> the first day a trigger could fire (see replay.trigger_guard)
        self.wake_days: dict[dt.date, set[str]] = {}  # day -> members to look at again that day
        self.changed: set[str] = set()  # members saved since the last daily run
        self.today: dt.date | None = None

    # -------------------------------------------------------------- transactions, programs

    def transaction(self):
        return _NULL

    def batch(self):
        return _NULL

    def ensure_program(self, version: str, name: str, sources: dict[str, str]) -> None:
        pass

    def close(self) -> None:
        pass

    # -------------------------------------------------------------- what to keep

    def keeps(self, event_id: str | None) -> bool:
        return self.keep is None or (event_id is not None and event_id in self.keep)

    def reference_done(self, original: str) -> None:
        """A line that read ``original`` back is done: forget the purchase once no other line will."""
        if self.keep is None or original not in self.keep:
            return
        self.keep[original] -= 1
        if self.keep[original] > 0:
            return
        del self.keep[original]
        self.events.pop(original, None)
        for entry in self.entries.pop(original, ()):
            self.reversed.pop(entry.id, None)
            self.kept_entries.discard(entry.id)
            self.expired.pop(entry.id, None)
        self.returns_.pop(original, None)
        for entry in self.rewards.pop(original, ()):
            self.kept_rewards.discard(entry.id)
            self.reward_back.pop(entry.id, None)
        self.event_coupons.pop(original, None)
        self.event_firings.pop(original, None)

    # -------------------------------------------------------------- events

    def get_event(self, event_id: str) -> StoredEvent | None:
        return self.events.get(event_id)

    def put_event(self, event: StoredEvent) -> None:
        if event.status == "parked":
            self.events[event.id] = event
            self.parked.setdefault(event.original, []).append(event.id)
        elif event.kind == "purchase" and self.keeps(event.id):
            self.events[event.id] = event
        elif event.id in self.events:  # a parked refund, now applied (or refused)
            del self.events[event.id]

    def parked_refunds(self, original: str) -> list[StoredEvent]:
        ids = self.parked.pop(original, [])
        return [self.events[i] for i in ids if i in self.events]

    # -------------------------------------------------------------- members

    def load_member(self, member_id: str) -> MemberRecord | None:
        return self.members.get(member_id)

    def save_member(self, record: MemberRecord) -> None:
        if not record.stored:
            record.stored = True
            self.members[record.member.id] = record
            self._ids = None
        if self.wake is not None:
            self.changed.add(record.member.id)
        for day in (record.tier_review, record.grace_until):
            if day is not None and (self.review_floor is None or day < self.review_floor):
                self.review_floor = day
        la = record.last_activity
        if la is not None and self.activity_floor is not None and la < self.activity_floor:
            self.activity_floor = la

    def count_members(self) -> int:
        return len(self.members)

    def sorted_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = sorted(self.members)
        return self._ids

    def _page(self, ids: list[str], after: str | None, limit: int) -> list[str]:
        if after is None:
            return ids[:limit]
        import bisect

        i = bisect.bisect_right(ids, after)
        return ids[i : i + limit]

    def iter_members(self, after: str | None, limit: int) -> list[MemberRecord]:
        if self.wake is None or self.today is None:
            ids = self.sorted_ids()
        else:
            if after is None:
                self._due = self._due_today(self.today)
            ids = self._due
        return [self.members[i] for i in self._page(ids, after, limit)]

    def _due_today(self, today: dt.date) -> list[str]:
        """The members a trigger could fire for today; the others are woken on their day (or when they change)."""
        look = self.changed
        self.changed = set()
        for day in [d for d in self.wake_days if d <= today]:
            look |= self.wake_days.pop(day)
        due = []
        tomorrow = today + dt.timedelta(days=1)
        for member_id in look:
            day = self.wake(self.members[member_id], today)
            if day == today:
                due.append(member_id)
                day = tomorrow  # a candidate that does not fire is asked again tomorrow
            if day is not None:
                self.wake_days.setdefault(day, set()).add(member_id)
        due.sort()
        return due

    def members_inactive_since(self, cutoff: dt.datetime, after: str | None, limit: int) -> list[str]:
        if self.activity_floor is not None and cutoff <= self.activity_floor:
            return []
        if after is None:
            due, floor = [], None
            for i in self.sorted_ids():
                r = self.members[i]
                la = r.last_activity
                if la is None or not any(r.balances.values()):
                    continue
                if la < cutoff:
                    due.append(i)
                elif floor is None or la < floor:
                    floor = la
            self._inactive = due
            self.activity_floor = floor if not due else None
        return self._page(self._inactive, after, limit)

    def members_due_review(self, day: dt.date, after: str | None, limit: int) -> list[str]:
        if self.review_floor is None or day < self.review_floor:
            return []
        if after is None:
            due, floor = [], None
            for i in self.sorted_ids():
                r = self.members[i]
                for d in (r.tier_review, r.grace_until):
                    if d is None:
                        continue
                    if d <= day:
                        due.append(i)
                        break
                for d in (r.tier_review, r.grace_until):
                    if d is not None and d > day and (floor is None or d < floor):
                        floor = d
            self._review = due
            self.review_floor = floor  # the reviewed members' next dates come back through save_member
        return self._page(self._review, after, limit)

    # -------------------------------------------------------------- ledger and lots

    def add_entries(self, entries: Sequence[LedgerEntry]) -> list[int]:
        ids = []
        for e in entries:
            self.seq += 1
            e.id = self.seq
            ids.append(e.id)
            self.tally.entry(e)
            if e.kind == "expire":
                self._expire_ids.add(e.id)
            elif e.kind == "reverse" and e.reverses in self.kept_entries:
                taken = e.amount - (e.shortfall or ZERO) if e.amount <= 0 else e.amount
                self.reversed[e.reverses] = self.reversed.get(e.reverses, ZERO) + taken
            if e.kind == "earn" and self.keeps(e.event):
                self.entries.setdefault(e.event, []).append(e)
                self.kept_entries.add(e.id)
            if e.kind in ("earn", "reverse") and self._track_earned:
                days = self.earned.setdefault((e.member, e.balance), {})
                if days and e.day not in days and e.day < next(reversed(days)):  # keep the days in order
                    days[e.day] = ZERO
                    ordered = dict(sorted(days.items()))
                    days.clear()
                    days.update(ordered)
                days[e.day] = days.get(e.day, ZERO) + e.amount
                if len(days) > self.cap_days + 2:  # older days are outside every cap's period
                    cut = e.day - dt.timedelta(days=self.cap_days)
                    for d in [d for d in days if d < cut]:
                        del days[d]
        return ids

    def entries_for_event(self, event_id: str, member_id: str | None = None) -> list[LedgerEntry]:
        return list(self.entries.get(event_id, ()))

    def reversed_amounts(self, entry_ids: Sequence[int]) -> dict[int, Decimal]:
        return {i: self.reversed[i] for i in entry_ids if i in self.reversed}

    def open_lots(self, member_id: str, balance: str) -> list[Lot]:
        per = self.lots.get(member_id)
        if not per:
            return []
        return list(per.get(balance, ()))

    def open_lots_for(self, member_ids: Sequence[str], expiring_by: dt.date | None = None) -> dict[str, list[Lot]]:
        out = {}
        for m in member_ids:
            per = self.lots.get(m)
            if not per:
                continue
            lots = [
                lot
                for balance_lots in per.values()
                for lot in balance_lots
                if expiring_by is None or lot.expires_on is None or lot.expires_on <= expiring_by
            ]
            if lots:
                lots.sort(key=lambda lot: lot.id)
                out[m] = lots
        return out

    def add_lots(self, lots: Sequence[Lot]) -> None:
        for lot in lots:
            per = self.lots.setdefault(lot.member, {}).setdefault(lot.balance, [])
            if lot.id not in self.kept_entries:
                for other in reversed(per):  # at most one lot per key can take more: the newest, mostly
                    if (
                        other.id not in self.kept_entries
                        and other.expires_on == lot.expires_on
                        and other.releases_on == lot.releases_on
                    ):
                        other.amount += lot.amount
                        other.remaining += lot.remaining
                        break
                else:
                    self._open(per, lot)
            else:
                self._open(per, lot)

    def _open(self, per: list[Lot], lot: Lot) -> None:
        per.append(lot)
        if lot.expires_on is not None:
            heapq.heappush(self.expiry_heap, (lot.expires_on, lot.id))
            self.expiring[lot.id] = lot
            if len(self.expiry_heap) > 2 * len(self.expiring) + 1024:  # spent lots wait there for their day: drop them
                self.expiry_heap = [(x.expires_on, x.id) for x in self.expiring.values()]
                heapq.heapify(self.expiry_heap)

    def update_lots(self, lots: Sequence[Lot], moves: Sequence[tuple[int, int, Decimal]]) -> None:
        for entry_id, lot_id, amount in moves:
            if entry_id in self._expire_ids and lot_id in self.kept_entries:
                self.expired[lot_id] = self.expired.get(lot_id, ZERO) + amount
        self._expire_ids.clear()
        for lot in lots:
            if lot.remaining <= 0:
                self.expiring.pop(lot.id, None)
                per = self.lots[lot.member][lot.balance]
                for i, other in enumerate(per):
                    if other is lot:
                        del per[i]
                        break

    def lots_expiring(self, day: dt.date, limit: int) -> list[Lot]:
        out = []
        heap = self.expiry_heap
        while heap and heap[0][0] <= day and len(out) < limit:
            _, lot_id = heapq.heappop(heap)
            lot = self.expiring.pop(lot_id, None)
            if lot is not None and lot.remaining > 0:
                out.append(lot)
        return out

    def expired_from(self, lot_id: int) -> Decimal:
        return self.expired.get(lot_id, ZERO)

    def earned_since(self, member_id: str, balance: str, day: dt.date) -> Decimal:
        days = self.earned.get((member_id, balance))
        if not days:
            return ZERO
        total = ZERO
        for d in reversed(days):  # days come in order (a parked refund's day may come late: it is rare)
            if d < day:
                break
            total += days[d]
        return total

    # -------------------------------------------------------------- statistics, history, budgets

    def add_activity(self, member_id: str, day: dt.date, event: str | None, stats: dict[str, Decimal]) -> None:
        act = self.activity.get(member_id)
        if act is None:
            act = self.activity[member_id] = Activity()
        act.add(day, [scaled(stats[name]) if name in stats else 0 for name in ACTIVITY_STATS])

    def activity_sums(self, member_id: str, starts: Sequence[dt.date]) -> list[dict[str, Decimal]]:
        act = self.activity.get(member_id)
        if act is None:
            return [dict.fromkeys(ACTIVITY_STATS, ZERO) for _ in starts]
        return [dict(zip(ACTIVITY_STATS, act.sums(s))) for s in starts]

    def activity_sums_for(
        self, member_ids: Sequence[str], starts: Sequence[dt.date]
    ) -> dict[str, list[dict[str, Decimal]]]:
        if not starts:
            return {}
        return {m: self.activity_sums(m, starts) for m in member_ids if m in self.activity}

    def firings(self, member_id: str, keys: Iterable[str]) -> dict[str, list[dt.datetime]]:
        per = self.firings_.get(member_id)
        if not per:
            return {}
        return {k: [at for at, _ in per[k]] for k in keys if k in per}

    def firings_for(self, member_ids: Sequence[str], keys: Iterable[str]) -> dict[str, dict[str, list]]:
        keys = list(keys)
        out = {}
        for m in member_ids:
            found = self.firings(m, keys)
            if found:
                out[m] = found
        return out

    def add_firing(self, member_id: str, key: str, at: dt.datetime, event: str | None) -> None:
        self.firings_.setdefault(member_id, {}).setdefault(key, []).append((at, event))
        if event is not None and self.keeps(event):
            self.event_firings.setdefault(event, []).append((member_id, key))
        self.tally.firing(member_id, key, at)

    def void_firings(self, event_id: str) -> None:
        for member_id, key in self.event_firings.pop(event_id, ()):
            per = self.firings_.get(member_id, {})
            per[key] = [(at, ev) for at, ev in per.get(key, ()) if ev != event_id]

    def budgets(self, keys: Iterable[str]) -> dict[str, Decimal]:
        return {k: self.budget[k] for k in keys if k in self.budget}

    def add_budget(self, key: str, amount: Decimal) -> None:
        self.budget[key] = self.budget.get(key, ZERO) + amount

    def returns(self, purchase_id: str) -> dict[int, Decimal]:
        return dict(self.returns_.get(purchase_id, {}))

    def add_returns(self, purchase_id: str, refund_id: str, lines: dict[int, Decimal]) -> None:
        per = self.returns_.setdefault(purchase_id, {})
        for line, qty in lines.items():
            if qty:
                per[line] = per.get(line, ZERO) + qty

    # -------------------------------------------------------------- the reward journal (plugin reward types)

    def add_reward_entry(self, entry: RewardEntry) -> int:
        self.seq += 1
        entry.id = self.seq
        if entry.reverses is not None:
            if entry.reverses in self.kept_rewards:
                self.reward_back[entry.reverses] = self.reward_back.get(entry.reverses, ZERO) + (entry.amount or ZERO)
        elif self.keeps(entry.event):
            self.rewards.setdefault(entry.event, []).append(entry)
            self.kept_rewards.add(entry.id)
        if entry.amount is not None:
            key = (entry.reward, entry.unit)
            per = self.reward_sums.setdefault(entry.member, {})
            per[key] = per.get(key, ZERO) + entry.amount
        self.tally.reward(entry)
        return entry.id

    def reward_entries_for_event(self, event_id: str) -> list[RewardEntry]:
        return list(self.rewards.get(event_id, ()))

    def reward_reversed(self, entry_ids: Sequence[int]) -> dict[int, Decimal]:
        return {i: self.reward_back[i] for i in entry_ids if i in self.reward_back}

    def reward_totals(self, member_id: str) -> dict[tuple[str, str | None], Decimal]:
        return dict(self.reward_sums.get(member_id, {}))

    # -------------------------------------------------------------- coupons and tiers

    def add_coupon(self, coupon: CouponRecord) -> bool:
        if coupon.code in self.coupons_:
            return False  # taken: the applier tries the next code, as with the SQLite store
        self.coupons_[coupon.code] = coupon
        self._statuses[coupon.code] = coupon.status
        mine = self.member_coupons.setdefault(coupon.member, [])
        if coupon.valid_until is not None and len(mine) > 4:  # forget coupons that can no longer be used
            day = coupon.issued_at.date() - dt.timedelta(days=2)
            keep = [c for c in mine if c.valid_until is None or c.valid_until >= day]
            for c in mine:
                if c not in keep:
                    self.coupons_.pop(c.code, None)
                    self._statuses.pop(c.code, None)
            mine[:] = keep
        mine.append(coupon)
        key = (coupon.template, coupon.member)
        self.per_member[key] = self.per_member.get(key, 0) + 1
        self.per_template[coupon.template] = self.per_template.get(coupon.template, 0) + 1
        if self.keeps(coupon.event):
            self.event_coupons.setdefault(coupon.event, []).append(coupon.code)
        self.tally.coupon_issued(coupon)
        return True

    def get_coupon(self, code: str) -> CouponRecord | None:
        return self.coupons_.get(code)

    def update_coupon(self, coupon: CouponRecord) -> None:
        before = self._statuses.get(coupon.code, "issued")
        self._statuses[coupon.code] = coupon.status
        if coupon.status in ("redeemed", "void"):
            self.coupons_.pop(coupon.code, None)
            self._statuses.pop(coupon.code, None)
            mine = self.member_coupons.get(coupon.member, [])
            if coupon in mine:
                mine.remove(coupon)
        if coupon.status == "void" and before != "void":
            key = (coupon.template, coupon.member)
            self.per_member[key] -= 1
            self.per_template[coupon.template] -= 1
        self.tally.coupon_status(coupon, before)

    def coupons(self, member_id: str) -> list[CouponRecord]:
        return list(self.member_coupons.get(member_id, ()))

    def coupons_for_event(self, event_id: str, member_id: str | None = None) -> list[CouponRecord]:
        return [self.coupons_[c] for c in self.event_coupons.get(event_id, ()) if c in self.coupons_]

    def coupon_count(self, template: str, member_id: str | None = None) -> int:
        if member_id is None:
            return self.per_template.get(template, 0)
        return self.per_member.get((template, member_id), 0)

    def find_coupon(self, member_id: str, template: str, day: dt.date) -> CouponRecord | None:
        found = [
            c
            for c in self.member_coupons.get(member_id, ())
            if c.template == template and c.status == "issued" and (c.valid_until is None or c.valid_until >= day)
        ]
        return min(found, key=lambda c: (c.issued_at, c.code)) if found else None

    def add_tier_change(
        self, member_id: str, from_tier: str | None, to_tier: str, at: dt.datetime, reason: str, event: str | None
    ) -> None:
        self.tally.tier_change(member_id, from_tier, to_tier, at)

    def tier_history(self, member_id: str) -> list[dict]:
        return []

    # -------------------------------------------------------------- outbox: counted, never sent

    def add_message(self, message: Message) -> bool:
        self.tally.message(message)
        return True

    def outbox_counts(self) -> dict[str, int]:
        return {}

    def pending_channels(self) -> dict[str, int]:
        return {}

    # -------------------------------------------------------------- scheduled runs

    def schedule_progress(self, day: dt.date) -> tuple[str | None, bool]:
        self.today = day
        return self.schedule.get(day, (None, False))

    def set_schedule_progress(self, day: dt.date, last_member: str | None, done: bool) -> None:
        self.schedule = {day: (last_member, done)}  # only the day being run matters to a replay
