"""Shadow mode: a candidate program evaluated beside the live one, differences recorded, live never disturbed."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from loyalty_engine import Engine, SQLiteStore, cli, load_program

LIVE = """program "Shop" { currency CNY timezone "Asia/Shanghai" }
coupon BIG10 { discount 10%  valid 30 days }
rule "Base" on purchase { award 1 point per 1 CNY of net_amount }
rule "Big basket" on purchase when net_amount >= 200 { issue coupon BIG10 }
"""
CANDIDATE = """program "Shop" { currency CNY timezone "Asia/Shanghai" }
coupon BIG10 { discount 10%  valid 30 days }
rule "Base" on purchase { award 2 points per 1 CNY of net_amount }
rule "Big basket" on purchase when net_amount >= 100 { issue coupon BIG10 }
rule "Thanks" on purchase when net_amount >= 100 { send sms "thank you" }
"""


def purchase(n: int, amount: str, member: str = "m-1") -> dict:
    return {
        "id": f"t-{n}",
        "type": "purchase",
        "member": member,
        "at": f"2026-05-0{n}T10:00:00+08:00",
        "amount": amount,
    }


@pytest.fixture
def programs(tmp_path):
    live = tmp_path / "live.loy"
    live.write_text(LIVE, encoding="utf-8")
    candidate = tmp_path / "candidate.loy"
    candidate.write_text(CANDIDATE, encoding="utf-8")
    return load_program(live), load_program(candidate)


def rows(engine) -> list[dict]:
    cursor = engine.store.conn.execute("SELECT * FROM shadow_diffs ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def test_only_the_live_program_is_applied_and_the_differences_are_recorded(programs):
    live, candidate = programs
    plain = Engine(live, SQLiteStore(":memory:"))
    shadowed = Engine(live, SQLiteStore(":memory:"), shadow=candidate)
    for n, amount in enumerate(["50", "150", "250"], start=1):
        a, b = plain.process(purchase(n, amount)), shadowed.process(purchase(n, amount))
        assert (a.totals, a.coupons, a.messages) == (b.totals, b.coupons, b.messages)
    assert shadowed.store.load_member("m-1").balances == plain.store.load_member("m-1").balances
    recorded = rows(shadowed)
    assert [r["event"] for r in recorded] == ["t-1", "t-2", "t-3"]
    assert [r["status"] for r in recorded] == ["differs", "differs", "differs"]
    assert [(r["live_points"], r["candidate_points"], r["delta"]) for r in recorded] == [
        ("50", "100", "50"),
        ("150", "300", "150"),
        ("250", "500", "250"),
    ]
    second = json.loads(recorded[1]["details"])
    assert second["balances"] == {"points": [150, 300]}
    assert second["coupons"] == [[], ["BIG10"]]
    assert second["messages"] == [[], ["sms: thank you"]]
    assert second["rules"] == {"Base": [150, 300], "Big basket": [None, 0], "Thanks": [None, 0]}
    assert "coupons" not in json.loads(recorded[2]["details"])  # both issue BIG10 at 250


def test_the_same_outcome_is_recorded_as_same(programs):
    live, _ = programs
    engine = Engine(live, SQLiteStore(":memory:"), shadow=live)
    engine.process(purchase(1, "250"))
    assert [(r["status"], r["details"]) for r in rows(engine)] == [("same", "{}")]


def test_a_retried_event_is_compared_once(programs):
    live, candidate = programs
    engine = Engine(live, SQLiteStore(":memory:"))
    engine.shadow(candidate)
    engine.process(purchase(1, "150"))
    assert engine.process(purchase(1, "150")).duplicate
    assert len(rows(engine)) == 1
    engine.shadow(None)
    engine.process(purchase(2, "150"))
    assert len(rows(engine)) == 1  # shadowing stopped


def test_a_failing_candidate_never_fails_the_live_event(programs, monkeypatch):
    live, candidate = programs
    engine = Engine(live, SQLiteStore(":memory:"), shadow=candidate)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("the candidate divided by zero")

    monkeypatch.setattr(candidate, "evaluate", broken)
    result = engine.process(purchase(1, "150"))
    assert result.points == 150 and result.coupons == ()
    (row,) = rows(engine)
    assert row["status"] == "error" and row["error"] == "ZeroDivisionError: the candidate divided by zero"
    assert row["candidate_points"] is None


def test_a_candidate_without_the_event_type_is_an_error_row(tmp_path, programs):
    live, _ = programs
    with_review = tmp_path / "review.loy"
    with_review.write_text(LIVE + 'event review { rating: number }\nrule "R" on review { award 5 points }\n')
    engine = Engine(load_program(with_review), SQLiteStore(":memory:"), shadow=live)
    event = {"id": "r-1", "type": "review", "member": "m-1", "at": "2026-05-01T10:00:00+08:00", "rating": 5}
    assert engine.process(event).points == 5
    (row,) = rows(engine)
    assert row["status"] == "error" and "does not know the event type 'review'" in row["error"]


def test_a_rolled_back_event_leaves_no_shadow_row(programs):
    live, candidate = programs
    engine = Engine(live, SQLiteStore(":memory:"), shadow=candidate)
    engine.process(purchase(1, "150"))
    with pytest.raises(Exception):  # noqa: B017 - the same id with another payload: refused, nothing written
        engine.process(purchase(1, "999"))
    assert len(rows(engine)) == 1


def test_shadow_report(tmp_path, programs):
    live, candidate = programs
    db = tmp_path / "shadow.db"
    engine = Engine(live, SQLiteStore(db), shadow=candidate)
    engine.process(purchase(1, "50", "m-1"))
    engine.process(purchase(2, "150", "m-2"))
    engine.process(purchase(3, "250", "m-2"))
    engine.close()
    result = CliRunner().invoke(cli.main, ["shadow-report", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = [" ".join(line.split()) for line in result.output.splitlines()]
    assert f"candidate Shop ({candidate.version[:12]}) beside live {live.version[:12]}" in out
    assert "events compared: 3: 0 the same, 3 different, 0 failed in the candidate" in out
    assert "points: live 450, candidate 900 (+450)" in out
    assert out[out.index("coupons issued, on the events where they differ:") + 1] == "BIG10: live 0, candidate 1"
    assert "messages differ on 2 events" in out
    assert out[out.index("members with the largest points difference:") + 1 :][:2] == ["m-2: +400", "m-1: +50"]
    assert "Base: live 450, candidate 900 (+450) points, differs on 3 events" in out
    assert "Thanks: differs on 2 events (applied 0 times live, 2 in the candidate)" in out
    data = json.loads(CliRunner().invoke(cli.main, ["shadow-report", "--db", str(db), "--json"]).output)
    (report,) = data
    assert report["counts"] == {"events": 3, "same": 0, "differs": 3, "error": 0}
    assert Decimal(str(report["points"]["delta"])) == 450


def test_loyalty_run_with_a_shadow_candidate(tmp_path, programs):
    history = tmp_path / "events.jsonl"
    history.write_text("\n".join(json.dumps(purchase(n, a)) for n, a in [(1, "120"), (2, "80")]) + "\n")
    db = tmp_path / "run.db"
    args = [
        "run",
        str(tmp_path / "live.loy"),
        str(history),
        "--db",
        str(db),
        "--shadow",
        str(tmp_path / "candidate.loy"),
    ]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "balance changes: 200 points" in result.output  # the live program's 1 point per CNY
    report = CliRunner().invoke(cli.main, ["shadow-report", "--db", str(db)])
    assert "points: live 200, candidate 400 (+200)" in report.output


def test_no_database_and_no_runs(tmp_path):
    missing = CliRunner().invoke(cli.main, ["shadow-report", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    SQLiteStore(tmp_path / "empty.db").close()
    empty = CliRunner().invoke(cli.main, ["shadow-report", "--db", str(tmp_path / "empty.db")])
    assert empty.exit_code == 0 and "no shadow runs recorded" in empty.output


def test_a_shadow_row_that_cannot_be_written_does_not_fail_the_live_event(programs):
    live, candidate = programs
    engine = Engine(live, SQLiteStore(":memory:"), shadow=candidate)
    engine.store.conn.execute("DROP TABLE shadow_diffs")
    assert engine.process(purchase(1, "150")).points == 150
    assert engine.shadowing.log.failed == 1


def test_plugin_rewards_are_compared(tmp_path):
    pytest.importorskip("loyalty_cashback")
    head = 'program "Shop" { currency CNY timezone "Asia/Shanghai" }\n'
    live = tmp_path / "live.loy"
    live.write_text(head + 'rule "Back" on purchase { reward cashback(amount: net_amount * 2%) }\n', encoding="utf-8")
    candidate = tmp_path / "cand.loy"
    candidate.write_text(
        head + 'rule "Back" on purchase { reward cashback(amount: net_amount * 3%) }\n', encoding="utf-8"
    )
    engine = Engine(load_program(live), SQLiteStore(":memory:"), shadow=load_program(candidate))
    engine.process(purchase(1, "100"))
    (row,) = rows(engine)
    assert row["status"] == "differs"
    assert json.loads(row["details"])["rewards"] == [["cashback(amount: 2)"], ["cashback(amount: 3)"]]
