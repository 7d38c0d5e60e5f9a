"""The member context the store builds: statistics by window and lifetime, read without re-keying."""

import datetime as dt
from decimal import Decimal

import pytest

from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.history import MemberStats
from loyalty_engine.store.sqlite import _dec_map

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PROGRAM = (
    'program "T" { currency CNY timezone "Asia/Shanghai" }\n'
    'rule "base" on purchase { award 1 point per 1 CNY of net_amount }\n'
    'rule "regular" on purchase when visits over last 30 days >= 2 and spend over lifetime >= 100 {\n'
    "  award 5 points\n"
    "}\n"
)


def purchase(n, day, amount="60.00"):
    return {
        "id": f"p{n}",
        "type": "purchase",
        "member": "m1",
        "at": dt.datetime(2025, 3, day, 12, tzinfo=SHANGHAI).isoformat(),
        "items": [{"sku": "A", "category": "coffee", "quantity": 1, "unit_price": amount}],
    }


def test_windowed_and_lifetime_statistics_reach_the_rules(tmp_path):
    (tmp_path / "p.loy").write_text(PROGRAM)
    engine = Engine.open(load_program(tmp_path / "p.loy"), tmp_path / "s.db")
    assert engine.process(purchase(1, 1)).points == 60
    assert engine.process(purchase(2, 2)).points == 60  # one visit before it: not yet a regular
    assert engine.process(purchase(3, 3)).points == 65  # two visits in 30 days and 120 CNY so far
    record = engine.store.load_member("m1")
    stats = engine.context.build(record, dt.date(2025, 3, 4)).stats
    assert stats["visits:last_30_days"] == 3
    assert stats.get("spend:lifetime") == Decimal("180.00")
    assert stats.get("nights:lifetime") is None and "nights:lifetime" not in stats
    assert stats.get("spend:last_7_years", "none") == "none"  # a window the program does not read


def test_member_stats_is_a_read_only_mapping_of_what_it_holds():
    where = {"spend:w": (0, "spend"), "visits:w": (0, "visits")}
    stats = MemberStats(where, [{"spend": Decimal("12.5"), "visits": Decimal(2)}], {"purchases": Decimal(7)})
    assert dict(stats) == {"spend:w": Decimal("12.5"), "visits:w": Decimal(2), "purchases:lifetime": Decimal(7)}
    assert len(stats) == 3 and stats["purchases:lifetime"] == 7
    assert MemberStats(where, [], {}).get("spend:w", Decimal(0)) == 0  # a member the store has not seen
    with pytest.raises(KeyError):
        stats["refunds:w"]


def test_balance_maps_decode_with_or_without_the_store_own_formatting():
    assert _dec_map('{"points": "12.50", "miles": "3"}') == {"points": Decimal("12.50"), "miles": Decimal(3)}
    assert _dec_map(' { "points" : "1" } ') == {"points": Decimal(1)}  # written by another tool
    assert _dec_map("{}") == {} and _dec_map(None) == {}
