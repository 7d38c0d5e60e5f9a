"""Refunds of capped purchases: a cap's cut is spread over the rules in proportion, and a full refund
of such a purchase leaves no balance and no debt behind.

Both cases were found by the ``full_refund_restores_member`` invariant of ``loyalty test`` on the
example programs (supermarket_zh's 3000-a-day cap, fashion_retailer's 10000-a-day cap).
"""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_engine import Engine, SQLiteStore, load_program
from loyalty_engine.service.imports import import_row

EXAMPLES = Path(__file__).resolve().parent.parent / "dsl" / "examples"

CASES = [
    (
        "supermarket_zh.loy",
        "2027-02-10T07:00:00+08:00",
        {"tier": "银卡"},
        {},
        [("水果", 2, "0.03"), ("水果", 4, "460.23"), ("生鲜", 1, "0.35")],
        3000,
    ),
    (
        "fashion_retailer.loy",
        "2026-06-15T07:00:00+02:00",
        {"tier": "platinum", "joined": "2026-06-15"},
        {"store": "PAR-RIVOLI", "channel": "app"},
        [("other", 1, "0.01"), ("other", 4, "352.06"), ("coats", 5, "52.01")],
        10000,
    ),
]


@pytest.mark.parametrize("program_file, at, member, fields, lines, capped", CASES, ids=["supermarket", "fashion"])
def test_a_full_refund_of_a_capped_purchase_leaves_no_balance_and_no_debt(
    program_file, at, member, fields, lines, capped
):
    program = load_program(EXAMPLES / program_file)
    when = dt.datetime.fromisoformat(at)
    engine = Engine(program, SQLiteStore(":memory:"), clock=lambda: when)
    import_row(engine, {"id": "g", **member}, when - dt.timedelta(seconds=1))
    items = [{"sku": f"s{i}", "category": c, "quantity": q, "unit_price": p} for i, (c, q, p) in enumerate(lines)]
    event = {"id": "p", "type": "purchase", "member": "g", "at": at, "items": items, **fields}
    first = engine.process(event)
    points = [Decimal(e["amount"]) for e in first.entries if e["balance"] == "points"]
    assert first.points == capped and sum(points) == capped
    assert all(p > 0 for p in points), first.entries  # no rule's share of the cap goes below zero
    returned = [{"sku": i["sku"], "quantity": i["quantity"]} for i in items]
    engine.process({"id": "r", "type": "refund", "original": "p", "member": "g", "at": at, "items": returned})
    record = engine.store.load_member("g")
    assert not any(record.balances.values()) and not any(record.debts.values())
