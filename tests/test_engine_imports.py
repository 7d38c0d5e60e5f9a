"""Migrating members in: import-members from JSON lines and CSV."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from loyalty_engine.cli import main
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.imports import import_members

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PROGRAM = """program "T" { currency CNY timezone "Asia/Shanghai" rounding floor
  balance stamps
  balance cashback money
  points expire 24 months after last activity
}
rule "base" on purchase { award 1 point per 1 CNY of net_amount }
tiers by spend over last 12 months {
  member from 0
  silver from 1000 earn x2
  gold from 5000
  review every 12 months grace 3 months
}
"""
IMPORT_AT = dt.datetime(2026, 5, 1, 9, tzinfo=SHANGHAI)


def make_engine(path=":memory:") -> Engine:
    return Engine.open(load_program("t.loy", text=PROGRAM), path)


def write_jsonl(path, rows) -> None:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8"
    )


def dump(engine) -> list[str]:
    return list(engine.store.conn.iterdump())


ROWS = [
    {
        "id": "m1",
        "name": "王芳",
        "joined": "2023-01-10",
        "birthday": "1990-05-20",
        "tier": "silver",
        "tier_since": "2025-03-01",
        "balances": {"points": 1200, "stamps": 4, "cashback": "12.50"},
        "expires": {"stamps": "2026-12-31"},
        "qualifying": {"spend": "3400.00", "visits": 12},
    },
    {"id": "m2", "name": "Bo", "balances": {"points": "300"}, "expires": {"points": "2026-06-30"}},
    {"id": "m3", "name": "No balance"},
]


def test_import_jsonl_creates_members_with_their_opening_state(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS)
    report = import_members(engine, path, at=IMPORT_AT)
    assert (report.rows, report.created, report.updated, report.skipped, report.errors) == (3, 3, 0, 0, [])
    assert report.opening == {"points": Decimal(1500), "stamps": Decimal(4), "cashback": Decimal("12.50")}
    view = engine.member("m1", at=IMPORT_AT)
    assert view.member.name == "王芳" and view.member.birthday == dt.date(1990, 5, 20)
    assert view.member.joined == dt.date(2023, 1, 10)
    assert {k: b.total for k, b in view.balances.items()} == {
        "points": 1200,
        "stamps": 4,
        "cashback": Decimal("12.50"),
    }
    assert {e.kind for e in view.history} == {"opening"}
    assert view.balances["stamps"].lots == ((dt.date(2026, 5, 1), Decimal(4), dt.date(2026, 12, 31)),)
    # tier, when it was reached, and the next review after the import day
    assert view.tier.name == "silver" and view.tier.since == dt.date(2025, 3, 1)
    assert view.tier.review == dt.date(2027, 3, 1)
    # qualifying totals count in the tier window
    assert view.tier.value == Decimal("3400.00") and view.tier.needed == Decimal("1600.00")
    m3 = engine.member("m3", at=IMPORT_AT)
    assert m3.member.tier == "member" and m3.balances["points"].total == 0


def test_imported_qualifying_totals_count_for_an_upgrade_and_age_out(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS)
    import_members(engine, path, at=IMPORT_AT)
    result = engine.process(
        {
            "id": "t1",
            "type": "purchase",
            "member": "m1",
            "at": "2026-05-02T10:00:00+08:00",
            "items": [{"sku": "A", "quantity": 1, "unit_price": "1700"}],
        }
    )
    assert result.points == 3400  # silver x2
    assert result.tier == "gold"  # 3400 + 1700 >= 5000, at once
    later = engine.member("m1", at=dt.datetime(2027, 5, 2, 12, tzinfo=SHANGHAI))
    assert later.tier.value == 0  # both the import and the purchase have left the 12-month window


def test_imported_expiry_dates_are_applied(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS)
    import_members(engine, path, at=IMPORT_AT)
    report = engine.run_triggers(dt.date(2026, 6, 30))
    assert report.expired == {"points": Decimal(300)}
    assert engine.member("m2", at=IMPORT_AT).balances["points"].total == 0
    report = engine.run_triggers(dt.date(2026, 12, 31))
    assert report.expired == {"stamps": Decimal(4)}


def test_imported_balances_expire_after_last_activity(tmp_path):
    # no activity since the import: the opening points expire 24 months after it
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, [{"id": "m1", "balances": {"points": 500}}])
    import_members(engine, path, at=IMPORT_AT)
    assert engine.member("m1", at=IMPORT_AT).balances["points"].lots[0][2] == dt.date(2028, 5, 1)
    assert engine.run_triggers(dt.date(2028, 4, 30)).expired == {}
    assert engine.run_triggers(dt.date(2028, 5, 1)).expired == {"points": Decimal(500)}


def test_reimport_is_idempotent(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS)
    import_members(engine, path, at=IMPORT_AT)
    ledger = engine.store.ledger_sums()
    activity = engine.store.conn.execute("SELECT count(*) FROM activity").fetchone()[0]
    again = import_members(engine, path, at=IMPORT_AT + dt.timedelta(days=1))
    assert (again.created, again.updated, again.skipped, again.opening) == (0, 0, 3, {})
    assert engine.store.ledger_sums() == ledger
    assert engine.store.conn.execute("SELECT count(*) FROM activity").fetchone()[0] == activity
    assert engine.member("m1", at=IMPORT_AT).tier.value == Decimal("3400.00")


def test_reimport_of_qualifying_totals_only_is_idempotent(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, [{"id": "m1", "qualifying": {"spend": "800"}}])
    import_members(engine, path, at=IMPORT_AT)
    import_members(engine, path, at=IMPORT_AT)
    assert engine.member("m1", at=IMPORT_AT).tier.value == 800


def test_reimport_updates_details(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS)
    import_members(engine, path, at=IMPORT_AT)
    write_jsonl(path, [dict(ROWS[1], name="Bo Li", email="bo@example.com")])
    report = import_members(engine, path, at=IMPORT_AT)
    assert report.skipped == 1
    member = engine.member("m2", at=IMPORT_AT)
    assert member.member.name == "Bo Li" and member.member.email == "bo@example.com"
    assert member.balances["points"].total == 300


def test_import_for_a_member_who_already_shopped_adds_the_opening_balance_once(tmp_path):
    engine = make_engine()
    engine.process(
        {
            "id": "t1",
            "type": "purchase",
            "member": "m2",
            "at": "2026-04-30T10:00:00+08:00",
            "items": [{"sku": "A", "quantity": 1, "unit_price": "10"}],
        }
    )
    path = tmp_path / "members.jsonl"
    write_jsonl(path, ROWS[1:2])
    report = import_members(engine, path, at=IMPORT_AT)
    assert report.errors == [] and report.created == 0 and report.updated == 1
    assert report.opening == {"points": Decimal(300)}
    assert engine.member("m2", at=IMPORT_AT).balances["points"].total == 310
    again = import_members(engine, path, at=IMPORT_AT)
    assert again.skipped == 1
    assert engine.member("m2", at=IMPORT_AT).balances["points"].total == 310


BAD_ROWS = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ({"id": "b1", "balances": {"points": "abc"}}, "balances.points"),
    ({"id": "b2", "balances": {"miles": 5}}, "miles"),
    ({"id": "b3", "balances": {"points": -5}}, "must be >= 0"),
    ({"id": "b4", "tier": "diamond"}, "diamond"),
    ({"id": "b5", "tier": "gold", "tier_since": "2025-13-01"}, "tier_since"),
    ({"id": "b6", "expires": {"points": "soon"}, "balances": {"points": 1}}, "expires.points"),
    ({"id": "b7", "qualifying": {"karma": 3}}, "karma"),
    ({"id": "b8", "joined": "yesterday"}, "joined"),
    ({"id": "b9", "balances": {"points": "12.5"}}, "whole"),
    ({"id": "b10", "qualifying": {"spend": "-100"}}, "must be >= 0"),
    ({"name": "no id"}, "id"),
    ({"id": "b11", "balance": {"points": 500}}, "balance: unknown field; did you mean 'balances'?"),
    ({"id": "b12", "birth_day": "1990-05-20"}, "birth_day: unknown field; did you mean 'birthday'?"),
    ({"id": " "}, "'id' must not be empty"),
]


def test_bad_rows_are_reported_with_their_line_number_and_nothing_of_them_is_written(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.jsonl"
    rows = [ROWS[0]]
    for row, _ in BAD_ROWS:
        rows += ["", row] if isinstance(row, str) else [row]  # blank lines are skipped but counted
    rows.append(ROWS[1])
    write_jsonl(path, rows)
    report = import_members(engine, path, at=IMPORT_AT)
    assert report.created == 2
    assert [n for n, _ in report.errors] == [3, 5, *range(6, 6 + len(BAD_ROWS) - 2)]
    for (_, problem), (_, expected) in zip(report.errors, BAD_ROWS):
        assert expected in problem, (problem, expected)
    assert engine.store.count_members() == 2
    assert {m for m, _ in engine.store.ledger_sums()} == {"m1", "m2"}
    assert engine.store.conn.execute("SELECT count(*) FROM activity WHERE member != 'm1'").fetchone()[0] == 0


CSV = """id,name,joined,tier,tier_since,balances.points,balances.cashback,expires.points,qualifying.spend
m1,王芳,2023-01-10,silver,2025-03-01,1200,12.50,2027-03-31,3400.00
m2,"Li, Bo",,,,300,,,
m3,Bad,2023-01-10,diamond,,5,,,
m4,Bad number,,,,lots,,,
m5,Last,,gold,,,,,6000
"""


def test_import_csv(tmp_path):
    engine = make_engine()
    path = tmp_path / "members.csv"
    path.write_text(CSV, encoding="utf-8")
    report = import_members(engine, path, at=IMPORT_AT)
    assert report.created == 3
    assert [n for n, _ in report.errors] == [4, 5]
    assert "diamond" in report.errors[0][1] and "balances.points" in report.errors[1][1]
    m1 = engine.member("m1", at=IMPORT_AT)
    assert m1.member.name == "王芳" and m1.tier.name == "silver" and m1.tier.since == dt.date(2025, 3, 1)
    assert m1.balances["points"].lots == ((dt.date(2026, 5, 1), Decimal(1200), dt.date(2027, 3, 31)),)
    assert m1.balances["cashback"].total == Decimal("12.50")
    assert m1.tier.value == Decimal("3400.00")
    m2 = engine.member("m2", at=IMPORT_AT)
    assert m2.member.name == "Li, Bo" and m2.balances["points"].total == 300
    m5 = engine.member("m5", at=IMPORT_AT)
    assert m5.member.tier == "gold" and m5.tier.since == dt.date(2026, 5, 1)
    assert engine.store.load_member("m3") is None and engine.store.load_member("m4") is None
    again = import_members(engine, path, at=IMPORT_AT)
    assert again.skipped == 3 and again.created == 0


def test_import_members_cli(tmp_path):
    program = tmp_path / "t.loy"
    program.write_text(PROGRAM, encoding="utf-8")
    members = tmp_path / "members.jsonl"
    write_jsonl(members, [ROWS[1], {"id": "bad", "balances": {"points": "x"}}])
    db = tmp_path / "loyalty.db"
    runner = CliRunner()
    result = runner.invoke(main, ["import-members", str(members), "--db", str(db), "--program", str(program)])
    assert result.exit_code == 2, result.output
    assert "1 created" in result.output
    assert f"{members}:2:" in result.output
    result = runner.invoke(main, ["import-members", str(members), "--db", str(db), "--program", str(program), "--json"])
    data = json.loads(result.output[result.output.index("{") :])
    assert data["skipped"] == 1 and data["errors"][0]["line"] == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_import_empty_file(tmp_path, suffix):
    engine = make_engine()
    path = tmp_path / f"empty{suffix}"
    path.write_text("", encoding="utf-8")
    report = import_members(engine, path, at=IMPORT_AT)
    assert report.rows == 0 and report.errors == []
