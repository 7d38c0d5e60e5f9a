"""Model-based test of the ledger (hypothesis stateful testing).

Random sequences of purchases, partial and full refunds, redemptions,
adjustments, expiry runs and replays are applied to the engine and to a small
in-memory model of lots, debts and reversals. After every step the two must
agree, and the ledger invariants must hold:

- every balance equals the sum of its ledger entries;
- the open lots add up to the balance (which never goes negative here);
- no lot is below zero;
- a replayed id returns the identical result and writes nothing;
- a full refund of a purchase returns the member to the balance (and debt) they had without it;
- no refund takes back more than its purchase earned.

Set LOYALTY_SEED to replay another seed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from decimal import Decimal
from fractions import Fraction

import attrs
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty_engine.errors import ConflictError, RefusedError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine

SEED = int(os.environ.get("LOYALTY_SEED", "20260505"))
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START = dt.date(2026, 1, 1)
EXPIRY_DAYS = 30
BONUS, BONUS_FROM = 20, 100
PROGRAM = f"""program "Model" {{ currency CNY timezone "Asia/Shanghai" rounding floor
  points expire {EXPIRY_DAYS} days after earning
}}
rule "base" on purchase {{ award 1 point per 1 CNY of net_amount }}
rule "bonus" on purchase when net_amount >= {BONUS_FROM} {{ award {BONUS} points }}
"""
MEMBERS = ("m0", "m1", "m2")
PRICES = ("1.00", "9.99", "12.50", "33.33", "45.00", "100.00")


# ------------------------------------------------------------------ the model


@attrs.define
class ModelLot:
    id: int
    earned: dt.date
    expires: dt.date
    remaining: int


@attrs.define
class ModelEntry:
    """An earn entry of a purchase: its amount, its lot, and how much has been reversed (shortfalls included)."""

    amount: int
    lot: int
    reversed: int = 0


@attrs.define
class ModelPurchase:
    id: str
    member: str
    items: list[tuple[str, int, Decimal]]  # sku, quantity, unit price
    entries: dict[str, ModelEntry] = attrs.field(factory=dict)  # rule -> entry
    returned: list[int] = attrs.field(factory=list)

    @property
    def amounts(self) -> list[Decimal]:
        return [q * p for _, q, p in self.items]

    @property
    def full(self) -> bool:
        return all(r >= q for r, (_, q, _) in zip(self.returned, self.items))


class Model:
    def __init__(self):
        self.lots: dict[str, list[ModelLot]] = {m: [] for m in MEMBERS}
        self.debt: dict[str, int] = dict.fromkeys(MEMBERS, 0)
        self.next_lot = 0
        self.expired: dict[int, int] = {}  # lot -> points that expired from it

    def balance(self, member: str) -> int:
        return sum(lot.remaining for lot in self.lots[member])

    def credit(self, member: str, amount: int, day: dt.date, repay: bool = True) -> int:
        self.next_lot += 1
        self.lots[member].append(ModelLot(self.next_lot, day, day + dt.timedelta(days=EXPIRY_DAYS), amount))
        if repay and self.debt[member] > 0:
            take = min(self.debt[member], self.balance(member))
            self.debt[member] -= take
            self.debit(member, take)
        return self.next_lot

    def available(self, member: str, day: dt.date) -> int:
        """What a redemption may spend: lots not yet expired (even if the expiry run has not swept them)."""
        return sum(lot.remaining for lot in self.lots[member] if lot.expires > day)

    def debit(self, member: str, amount: int, prefer: int | None = None, day: dt.date | None = None) -> None:
        """Take ``amount`` first-in first-out; ``day`` (a redemption) skips lots that have expired by then."""
        lots = sorted(self.lots[member], key=lambda lot: (lot.expires, lot.id))
        if day is not None:
            lots = [lot for lot in lots if lot.expires > day]
        if prefer is not None:
            lots.sort(key=lambda lot: lot.id != prefer)
        available = sum(lot.remaining for lot in lots)
        if amount > available:
            self.debt[member] += amount - available
            amount = available
        for lot in lots:
            take = min(lot.remaining, amount)
            lot.remaining -= take
            amount -= take
        self.lots[member] = [lot for lot in self.lots[member] if lot.remaining > 0]

    def expire(self, day: dt.date) -> int:
        total = 0
        for member, lots in self.lots.items():
            for lot in sorted(lots, key=lambda lot: lot.id):
                if lot.expires <= day and lot.remaining > 0:
                    total += lot.remaining
                    self.expired[lot.id] = self.expired.get(lot.id, 0) + lot.remaining
                    self.debit(member, lot.remaining, prefer=lot.id)
        return total

    def purchase(self, p: ModelPurchase, day: dt.date) -> int:
        """Credit what the purchase earned (debts are repaid first); returns the balance change."""
        before = self.balance(p.member)
        net = sum(p.amounts, Decimal(0))
        base = math.floor(net)
        p.returned = [0] * len(p.items)
        if base:
            p.entries["base"] = ModelEntry(base, self.credit(p.member, base, day))
        if net >= BONUS_FROM:
            p.entries["bonus"] = ModelEntry(BONUS, self.credit(p.member, BONUS, day))
        return self.balance(p.member) - before

    def refund(self, p: ModelPurchase, lines: dict[int, int]) -> int:
        """Reverse what the returned lines earned; returns the points change (what the ledger lost)."""
        for i, q in lines.items():
            p.returned[i] = min(p.items[i][1], p.returned[i] + q)
        amounts = p.amounts
        covered = sum(
            (Fraction(a) * Fraction(r, q) for a, r, (_, q, _) in zip(amounts, p.returned, p.items)), Fraction(0)
        )
        share = covered / sum((Fraction(a) for a in amounts), Fraction(0))
        before = self.balance(p.member)
        for rule_name in ("base", "bonus"):
            entry = p.entries.get(rule_name)
            if entry is None:
                continue
            if rule_name == "base":
                target = entry.amount if share == 1 else math.trunc(entry.amount * share)
            else:
                target = entry.amount if p.full else 0
            target = min(target, entry.amount - self.expired.get(entry.lot, 0))  # expired points are not taken twice
            change = target - entry.reversed
            if change > 0:
                entry.reversed += change
                self.debit(p.member, change, prefer=entry.lot)
        return self.balance(p.member) - before


# ------------------------------------------------------------------ the machine


def day_time(day: dt.date) -> str:
    return dt.datetime.combine(day, dt.time(12), SHANGHAI).isoformat()


items_strategy = st.lists(st.tuples(st.integers(1, 3), st.sampled_from(PRICES)), min_size=1, max_size=3).map(
    lambda lines: [(f"S{i}", q, Decimal(p)) for i, (q, p) in enumerate(lines)]
)


@seed(SEED)
class LedgerMachine(RuleBasedStateMachine):
    purchases = Bundle("purchases")

    def __init__(self):
        super().__init__()
        self.engine = Engine.open(load_program("model.loy", text=PROGRAM), ":memory:")
        self.store = self.engine.store
        start = dt.datetime.combine(START, dt.time(9), SHANGHAI)
        for member in MEMBERS:
            self.engine.upsert_member({"id": member}, at=start)
        self.model = Model()
        self.day = START
        self.counter = 0
        self.done: list[tuple] = []  # (replay callable, first result, conflicting callable)
        self.model_purchases: dict[str, ModelPurchase] = {}

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def state(self) -> tuple:
        conn = self.store.conn
        return (
            conn.execute("SELECT count(*) FROM ledger").fetchone()[0],
            conn.execute("SELECT count(*) FROM events").fetchone()[0],
            tuple(conn.execute("SELECT id, balances, debts FROM members ORDER BY id").fetchall()),
        )

    # -------------------------------------------------------------- operations

    def _purchase_event(self, event_id: str, member: str, items) -> dict:
        return {
            "id": event_id,
            "type": "purchase",
            "member": member,
            "at": day_time(self.day),
            "items": [{"sku": s, "quantity": q, "unit_price": str(p)} for s, q, p in items],
        }

    def _do_purchase(self, member: str, items) -> ModelPurchase:
        event = self._purchase_event(self.new_id("t"), member, items)
        result = self.engine.process(event)
        p = ModelPurchase(event["id"], member, items)
        expected = self.model.purchase(p, self.day)
        assert result.points == expected
        self.model_purchases[p.id] = p
        changed = self._purchase_event(event["id"], member, [(s, q + 1, pr) for s, q, pr in items])
        self.done.append((lambda e=event: self.engine.process(e), result, lambda c=changed: self.engine.process(c)))
        return p

    def _do_refund(self, p: ModelPurchase, lines: dict[int, int], full: bool) -> None:
        event = {
            "id": self.new_id("r"),
            "type": "refund",
            "member": p.member,
            "original": p.id,
            "at": day_time(self.day),
            "items": [] if full else [{"sku": p.items[i][0], "quantity": q} for i, q in lines.items() if q],
        }
        if full:
            lines = {i: q for i, (_, q, _) in enumerate(p.items)}
        result = self.engine.process(event)
        expected = self.model.refund(p, lines)
        assert result.status == "applied"
        assert result.points == expected
        other = dict(event, member=MEMBERS[(MEMBERS.index(p.member) + 1) % len(MEMBERS)])
        self.done.append((lambda e=event: self.engine.process(e), result, lambda c=other: self.engine.process(c)))

    @rule(target=purchases, member=st.sampled_from(MEMBERS), items=items_strategy)
    def purchase(self, member, items):
        return self._do_purchase(member, items)

    @rule(p=purchases, data=st.data())
    def partial_refund(self, p, data):
        lines = {i: data.draw(st.integers(0, q), label=f"line {i}") for i, (_, q, _) in enumerate(p.items)}
        if not any(lines.values()):
            lines[0] = 1
        self._do_refund(p, lines, full=False)

    @rule(p=consumes(purchases))
    def full_refund(self, p):
        self._do_refund(p, {}, full=True)

    @rule(member=st.sampled_from(MEMBERS), items=items_strategy)
    def purchase_then_full_refund(self, member, items):
        before = (self.engine.member(member, at=self._now()).balances["points"],)
        p = self._do_purchase(member, items)
        self._do_refund(p, {}, full=True)
        after = (self.engine.member(member, at=self._now()).balances["points"],)
        assert (after[0].total, after[0].debt) == (before[0].total, before[0].debt)

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(1, 400))
    def redeem(self, member, points):
        reference = self.new_id("red")
        at = self._now()
        call = lambda: self.engine.redeem_points(member, points, reference, at=at)  # noqa: E731
        if points > self.model.available(member, self.day):
            before = self.state()
            with pytest.raises(RefusedError) as info:
                call()
            assert info.value.code == "insufficient_balance"
            after = self.state()
            assert (after[0], after[2]) == (before[0], before[2])  # only the refusal is kept, for the reference
            with pytest.raises(RefusedError) as again:
                call()
            assert again.value.reason == info.value.reason
            assert self.state() == after
            return
        result = call()
        assert result.points == -points
        self.model.debit(member, points, day=self.day)
        self.done.append((call, result, lambda: self.engine.redeem_points(member, points + 1, reference, at=at)))

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(-300, 300).filter(bool))
    def adjust(self, member, points):
        reference = self.new_id("adj")
        at = self._now()
        call = lambda: self.engine.adjust(member, points, "model", reference, at=at)  # noqa: E731
        result = call()
        assert result.entries[0]["amount"] == str(points) or result.entries[0].get("shortfall")
        if points > 0:
            self.model.credit(member, points, self.day)
        else:
            self.model.debit(member, -points)
        self.done.append((call, result, lambda: self.engine.adjust(member, points, "other", reference, at=at)))

    @rule(days=st.integers(1, 45))
    def advance(self, days):
        self.day += dt.timedelta(days=days)

    @rule(run_twice=st.booleans())
    def expire(self, run_twice):
        report = self.engine.run_triggers(self.day)
        expected = self.model.expire(self.day)
        assert report.expired.get("points", Decimal(0)) == expected
        if run_twice:
            assert self.engine.run_triggers(self.day).expired == {}

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def replay(self, data):
        call, first, _ = data.draw(st.sampled_from(self.done), label="replayed")
        before = self.state()
        again = call()
        assert again.duplicate
        assert attrs.evolve(again, duplicate=False) == first
        assert self.state() == before

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def conflict(self, data):
        _, _, conflicting = data.draw(st.sampled_from(self.done), label="conflicting")
        before = self.state()
        with pytest.raises(ConflictError):
            conflicting()
        assert self.state() == before

    def _now(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(12), SHANGHAI)

    # -------------------------------------------------------------- invariants

    @invariant()
    def balances_equal_their_entries_and_the_model(self):
        sums = self.store.ledger_sums()
        for member in MEMBERS:
            record = self.store.load_member(member)
            total = record.balances.get("points", Decimal(0))
            assert total == sums.get((member, "points"), Decimal(0))
            assert total == self.model.balance(member) >= 0
            assert record.debts.get("points", Decimal(0)) == self.model.debt[member]
            lots = self.store.open_lots(member, "points")
            assert all(lot.remaining > 0 for lot in lots)
            assert sum((lot.remaining for lot in lots), Decimal(0)) == total
            expected = sorted((lot.earned, lot.expires, lot.remaining) for lot in self.model.lots[member])
            assert sorted((lot.earned_on, lot.expires_on, int(lot.remaining)) for lot in lots) == expected

    @invariant()
    def no_lot_below_zero_and_no_refund_takes_more_than_earned(self):
        conn = self.store.conn
        assert conn.execute("SELECT count(*) FROM lots WHERE CAST(remaining AS INTEGER) < 0").fetchone()[0] == 0
        for p in self.model_purchases.values():
            entries = [e for e in self.store.entries_for_event(p.id) if e.kind == "earn"]
            assert sorted(int(e.amount) for e in entries) == sorted(e.amount for e in p.entries.values())
            done = self.store.reversed_amounts([e.id for e in entries])
            for entry in entries:
                assert -entry.amount <= done.get(entry.id, Decimal(0)) <= 0

    def teardown(self):
        self.engine.close()


def test_ledger_against_the_model():
    print(f"seed={SEED} (set LOYALTY_SEED to replay another)")
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LOYALTY_MODEL_EXAMPLES", "100")),
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
