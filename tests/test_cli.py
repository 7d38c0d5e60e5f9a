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


def test_check_of_a_folder_without_rule_files_is_an_error_not_a_clean_check(tmp_path):
    (tmp_path / "rules").mkdir()
    result = run("check", tmp_path / "rules")
    assert result.exit_code == 1 and "no .loy files in this folder" in result.output


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


NOT_UTF8 = b'{"id": "t-1", "name": "Caf\xe9"}\n'  # Latin-1, as some exports write it


def _bad_inputs(tmp_path):
    (tmp_path / "bad.json").write_bytes(NOT_UTF8)
    (tmp_path / "bad.jsonl").write_bytes(b'{"type": "triggers", "at": "2026-05-01"}\n' + NOT_UTF8)
    (tmp_path / "bad.csv").write_bytes(b"id,name\nm-1,Caf\xe9\n")
    (tmp_path / "bad.toml").write_bytes(b'[channels.sms]\nname = "Caf\xe9"\n')
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "ok.json").write_text(json.dumps({"id": "m-1"}), encoding="utf-8")
    return tmp_path


def test_files_that_are_not_utf8_or_are_folders_get_a_readable_error(tmp_path, monkeypatch):
    monkeypatch.chdir(_bad_inputs(tmp_path))
    program = EXAMPLES / "coffee_chain.loy"
    assert run("run", program, "ok.json", "--db", "x.db").exit_code == 2  # a database for the commands below
    cases = [
        (["eval", program, "--event", "bad.json"], "bad.json: event file is not UTF-8 text"),
        (["eval", program, "--event", "folder.json"], "event file 'folder.json' is a directory"),
        (
            ["eval", program, "--event", EVENTS / "coffee_chain.purchase.json", "--member", "bad.json"],
            "bad.json: member",
        ),
        (["explain", program, "--event", "bad.json"], "bad.json: event file is not UTF-8 text"),
        (["explain", program, "--triggers", "--member", "bad.json", "--as-of", "2026-05-01T00:00:00Z"], "bad.json"),
        (["run", program, "bad.jsonl", "--db", "x.db"], "bad.jsonl:2: not UTF-8 text"),
        (["redeem", "coupon", "X", "--purchase", "bad.json", "--db", "x.db"], "bad.json: purchase file is not UTF-8"),
        (["import-members", "bad.csv", "--db", "x.db"], "bad.csv:2: not UTF-8 text"),
        (["import-members", "bad.json", "--db", "x.db"], "bad.json:1: not UTF-8 text"),
        (["deliver", "--config", "bad.toml", "--db", "x.db"], "bad.toml: not UTF-8 text"),
        (["simulate", program, "--events", "bad.jsonl"], "bad.jsonl:2: --events file is not UTF-8 text"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2 and not isinstance(result.exception, UnicodeDecodeError | OSError), (args, result)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_as_of_that_is_not_a_time_names_the_option(tmp_path):
    result = run(
        "eval", EXAMPLES / "coffee_chain.loy", "--event", EVENTS / "coffee_chain.purchase.json", "--as-of", "x"
    )
    assert result.exit_code == 2
    assert "--as-of: 'x' is not an ISO 8601 time" in result.output


def test_an_engine_error_no_command_handles_is_printed_not_raised(monkeypatch):
    from loyalty_engine.errors import EvaluationError
    from loyalty_engine.program import Program

    def fails(self, *args, **kwargs):
        raise EvaluationError("evaluation failed: a number is too large", rule="Base earn")

    monkeypatch.setattr(Program, "evaluate", fails)
    result = run("eval", EXAMPLES / "coffee_chain.loy", "--event", EVENTS / "coffee_chain.purchase.json")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "error: evaluation failed: a number is too large (rule 'Base earn')" in result.output


def _commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_option_of_every_command_says_what_it_does():
    missing = [
        f"loyalty {' '.join(path)} {param.opts[0]}"
        for path, command in _commands(main)
        for param in command.params
        if param.param_type_name == "option" and not (param.help or "").strip()
    ]
    assert missing == []


def test_triggers_options_are_checked_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("triggers", "--as-of", "2026-06-01")
    assert result.exit_code == 2 and "database 'loyalty.db' does not exist" in result.output
    assert not (tmp_path / "loyalty.db").exists()  # nothing created on the way
    assert run("run", EXAMPLES / "coffee_chain.loy", EVENTS / "coffee_chain.purchase.json").exit_code in (0, 2)
    cases = [
        (["--as-of", "2026-13-01"], "--as-of: '2026-13-01' is not a day (YYYY-MM-DD)"),
        (["--as-of", "2026-06-01", "--to", "soon"], "--to: 'soon' is not a day"),
        (["--as-of", "2026-06-01", "--to", "2026-05-01"], "--to 2026-05-01 is before --as-of 2026-06-01"),
    ]
    for args, message in cases:
        result = run("triggers", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert (
        run("run", EXAMPLES / "coffee_chain.loy", EVENTS / "coffee_chain.purchase.json", "--batch", "0").exit_code == 2
    )
    result = run("deliver", "--channel", "smss")
    assert result.exit_code == 2 and "--channel: unknown channel 'smss'; did you mean 'sms'?" in result.output


def test_simulate_of_a_history_where_nothing_applies_says_so(tmp_path):
    history = tmp_path / "events.jsonl"
    history.write_text(
        '{"id": "t-1", "type": "purchase", "member": "m-1", "at": "2026-05-05T10:15:00"}\n', encoding="utf-8"
    )
    result = run("simulate", EXAMPLES / "coffee_chain.loy", "--events", history)
    assert result.exit_code == 2
    assert "replayed no day: 0 members; no events applied; 1 lines skipped" in result.output
    assert "events.jsonl:1: invalid purchase: at: '2026-05-05T10:15:00' has no timezone offset" in result.output
