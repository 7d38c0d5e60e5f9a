"""The loyalty command line, as a user runs it."""

import json
from pathlib import Path

from click.testing import CliRunner

from loyalty_engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "dsl" / "examples"
EVENTS = EXAMPLES / "events"
PROGRAMS = ["coffee_chain", "fashion_retailer", "hotel", "supermarket_zh"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_check_examples_is_clean():
    result = run("check", *sorted(EXAMPLES.glob("*.loy")))
    assert result.exit_code == 0, result.output


def test_check_reports_errors_and_exits_1(tmp_path):
    bad = tmp_path / "bad.loy"
    bad.write_text(
        'program "T" { currency CNY  timezone "Asia/Shanghai" }\nrule "A" on purchase when net_amont > 1 { award 1 point }\n',
        encoding="utf-8",
    )
    result = run("check", bad)
    assert result.exit_code == 1
    assert f"{bad}:2:27: error: unknown name 'net_amont'" in result.output
    assert "hint: did you mean 'net_amount'?" in result.output


def test_eval_each_example_prints_effects_and_json_has_the_keys():
    for name in PROGRAMS:
        args = ["eval", EXAMPLES / f"{name}.loy", "--event", EVENTS / f"{name}.purchase.json"]
        args += ["--member", EVENTS / f"{name}.member.json"]
        table = run(*args)
        assert table.exit_code == 0, table.output
        assert "total:" in table.output
        data = json.loads(run(*args, "--json").output)
        assert {"points", "effects", "explanations"} <= set(data)
        assert isinstance(data["points"], int) and data["points"] > 0
        assert all({"type", "rule", "explanation"} <= set(e) for e in data["effects"])
        assert len(data["explanations"]) == len(data["effects"])


def test_eval_malformed_event_exits_2_naming_the_field(tmp_path):
    event = json.loads((EVENTS / "coffee_chain.purchase.json").read_text(encoding="utf-8"))
    event["items"][1]["unit_price"] = "abc"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    result = run("eval", EXAMPLES / "coffee_chain.loy", "--event", path)
    assert result.exit_code == 2
    assert "items[1].unit_price: 'abc' is not a decimal amount" in result.output


def test_eval_invalid_json_exits_2(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    result = run("eval", EXAMPLES / "coffee_chain.loy", "--event", path)
    assert result.exit_code == 2 and "not valid JSON" in result.output


def test_demo_builds_a_database_from_the_bundled_history(tmp_path):
    db = tmp_path / "demo.db"
    result = run("demo", "--db", db)
    assert result.exit_code == 0, result.output
    for expected in ("Bean There Coffee", "members: 24", "tiers:", "coupons:", "triggers fired:", "redeemed"):
        assert expected in result.output
    assert db.exists()
    again = run("demo", "--db", db)
    assert again.exit_code == 2 and "already exists" in again.output


def test_bundled_history_is_what_the_generator_writes(tmp_path):
    from loyalty_engine.demo import write_history

    write_history(tmp_path / "h.jsonl")
    assert (tmp_path / "h.jsonl").read_text(encoding="utf-8") == (
        EXAMPLES / "history" / "coffee_chain.jsonl"
    ).read_text(encoding="utf-8")
