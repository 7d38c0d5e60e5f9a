"""The ledger-replay test of RELIABILITY.md, on a seeded random history.

20,000 events over 2,000 members with 1% exact duplicates, 0.2% same id with a
different payload, 2% full and 1% partial refunds, 0.5% double refunds, 0.5%
refunds arriving before their purchase, and 3% point redemptions. Replay with
``LOYALTY_SEED=<seed>``; ``LOYALTY_REPLAY_EVENTS`` changes the size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from decimal import Decimal

import attrs
import pytest

from loyalty_engine.errors import ConflictError, RefusedError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.replay import dispatch
from loyalty_engine.service.results import Result
from tests.histories import COFFEE, check_invariants, generate, pick_seed

EVENTS = int(os.environ.get("LOYALTY_REPLAY_EVENTS", "20000"))
MEMBERS = max(1, EVENTS // 10)
EVENT_KINDS = ("purchase", "refund", "signup", "visit")


@pytest.fixture(scope="module")
def program():
    return load_program(COFFEE)


def _marks(conn) -> tuple:
    """What an insert would move: the last rowid of the (rowid) tables an event writes to."""
    return tuple(
        conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        for table in ("ledger", "coupons", "lot_moves", "outbox", "returns", "firings", "tier_history")
    )


def _ledger(store) -> list:
    rows = store.conn.execute(f"SELECT {store._ENTRY} FROM ledger ORDER BY id").fetchall()
    return [store._entry(row) for row in rows]


def _stored_result(stored) -> Result:
    return Result.from_json(stored.outcome, duplicate=True)


def _rebuild(program, store):
    """Process the events of ``store``'s log again (applied, parked, refused), in log order, into a fresh store."""
    fresh = Engine.open(program, ":memory:")
    mismatched = []
    for stored in store.events():
        payload = json.loads(stored.payload)
        try:
            if stored.kind in EVENT_KINDS:
                result = fresh.process(payload)
            elif stored.kind == "redeem":
                at = dt.datetime.fromisoformat(payload["at"]) if payload.get("at") else None
                result = fresh.redeem_points(payload["member"], payload["points"], stored.id, payload["balance"], at)
            else:  # pragma: no cover - the generator writes no other kinds
                raise AssertionError(f"unexpected kind in the event log: {stored.kind}")
        except RefusedError as exc:  # a refusal is in the log too: it must be refused again, the same way
            if stored.status != "refused" or json.loads(stored.outcome) != {"code": exc.code, "reason": exc.reason}:
                mismatched.append((stored.id, f"refused {exc.code}: {exc.reason}", stored.outcome))
            continue
        if stored.status == "refused" or attrs.evolve(result, duplicate=True) != _stored_result(stored):
            mismatched.append((stored.id, result.to_json(), stored.outcome))
    return fresh, mismatched


def test_ledger_replay(program):
    seed = pick_seed()
    print(f"seed={seed} events={EVENTS} members={MEMBERS}")
    history = generate(seed, EVENTS, MEMBERS)
    counts = history.counts()
    print(dict(counts))
    engine = Engine.open(program, ":memory:")
    store, conn = engine.store, engine.store.conn

    started = time.perf_counter()
    first: dict[str, Result] = {}  # the result an id got when it was first applied (or parked)
    conflicts_raised: set[int] = set()
    duplicates_seen = 0
    refused = []
    problems = []
    for i, line in enumerate(history.lines):
        line_id = line["id"]
        before_marks, before_changes = _marks(conn), conn.total_changes
        stored_before = store.get_event(line_id)
        try:
            result = dispatch(engine, line)
        except ConflictError:
            conflicts_raised.add(i)
            if stored_before is None:
                problems.append(f"line {i}: ConflictError for an id never stored: {line_id}")
            elif store.get_event(line_id) != stored_before:
                problems.append(f"line {i}: a refused conflict changed the stored event {line_id}")
            if _marks(conn) != before_marks or conn.total_changes != before_changes:
                problems.append(f"line {i}: a refused conflict ({line_id}) wrote something")
            continue
        except RefusedError as exc:
            refused.append((i, exc.code))
            if line["type"] != "redeem" or exc.code != "insufficient_balance":
                problems.append(f"line {i}: unexpected refusal {exc.code}: {exc.reason}")
            if _marks(conn) != before_marks:
                problems.append(f"line {i}: a refused redemption ({line_id}) wrote something")
            if stored_before is not None and (
                stored_before.status != "refused"
                or json.loads(stored_before.outcome) != {"code": exc.code, "reason": exc.reason}
            ):
                problems.append(f"line {i}: {line_id} was refused now but answered {stored_before.outcome} before")
            continue
        if stored_before is not None:
            duplicates_seen += 1
            if not result.duplicate:
                problems.append(f"line {i}: {line_id} was stored but processing it again was not a duplicate")
            if result != _stored_result(stored_before):
                problems.append(f"line {i}: duplicate {line_id} returned {result} not {stored_before.outcome}")
            if first[line_id].status == "applied" and attrs.evolve(result, duplicate=False) != first[line_id]:
                problems.append(f"line {i}: duplicate {line_id} differs from its first result")
            if _marks(conn) != before_marks or conn.total_changes != before_changes:
                problems.append(f"line {i}: duplicate {line_id} wrote something")
            continue
        if result.duplicate:
            problems.append(f"line {i}: {line_id} was new but came back as a duplicate")
        if i in history.conflicts:
            problems.append(f"line {i}: a conflicting payload for {line_id} was applied")
        first[line_id] = result
    elapsed = time.perf_counter() - started
    print(
        f"processed {len(history.lines)} lines in {elapsed:.1f}s: {len(first)} new, {duplicates_seen} duplicates, "
        f"{len(conflicts_raised)} conflicts, {len(refused)} refused"
    )
    assert not problems, "\n".join(problems[:20])

    # every id/payload mismatch was refused, and nothing else was
    assert conflicts_raised == history.conflicts
    assert duplicates_seen >= len(history.duplicates) - len(refused)

    # refunds that arrived before their purchase were parked, then applied when it came
    for refund_id in history.early:
        assert first[refund_id].status == "parked", refund_id
        assert store.get_event(refund_id).status == "applied", refund_id
    assert conn.execute("SELECT count(*) FROM events WHERE status = 'parked'").fetchone()[0] == 0

    # balances equal entry sums, lots agree, no entry reversed beyond what it earned, integrity ok
    assert check_invariants(conn) == []
    sums = store.ledger_sums()
    for record_id in history.members:
        record = store.load_member(record_id)
        for balance, value in record.balances.items():
            assert sums.get((record_id, balance), Decimal(0)) == value, (record_id, balance)
    assert {k for k, v in sums.items() if v} == {
        (m, b) for m in history.members for b, v in store.load_member(m).balances.items() if v
    }

    # a refund never takes back more than its purchase earned; a full return takes back exactly that
    purchases = set(history.refund_of.values())
    for purchase_id in purchases:
        earned = [e for e in store.entries_for_event(purchase_id) if e.kind == "earn"]
        taken = store.reversed_amounts([e.id for e in earned])
        for entry in earned:
            back = taken.get(entry.id, Decimal(0))
            assert abs(back) <= abs(entry.amount), (purchase_id, entry)
            assert back == 0 or (back > 0) != (entry.amount > 0), (purchase_id, entry, back)
            if purchase_id in history.full_refunds:
                assert back == -entry.amount, (purchase_id, entry, back)
    print(f"{len(purchases)} refunded purchases checked, {len(history.full_refunds)} returned in full")

    # rebuilding from the event log gives the same outcomes, balances and ledger
    started = time.perf_counter()
    fresh, mismatched = _rebuild(program, store)
    print(f"rebuilt from the event log in {time.perf_counter() - started:.1f}s")
    assert mismatched == [], mismatched[:3]
    assert fresh.store.ledger_sums() == sums
    for member_id in history.members:
        a, b = store.load_member(member_id), fresh.store.load_member(member_id)
        assert (a.balances, a.debts, a.member.tier) == (b.balances, b.debts, b.member.tier), member_id
    assert _ledger(fresh.store) == _ledger(store)  # the same entries (line weights compared as numbers)
    coupon_sql = "SELECT code, member, status FROM coupons ORDER BY code"
    assert fresh.store.conn.execute(coupon_sql).fetchall() == conn.execute(coupon_sql).fetchall()
    assert check_invariants(fresh.store.conn) == []
