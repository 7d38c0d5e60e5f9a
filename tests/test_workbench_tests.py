"""`loyalty test`: rule tests beside rule files, their errors, coverage and invariants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from loyalty_engine import cli
from loyalty_engine.program import load_program
from loyalty_engine.workbench.invariants import vocabulary
from loyalty_engine.workbench.testfile import TestFileError, read_test_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "dsl" / "examples"
PROGRAMS = sorted(
    p.name.removesuffix(".loy") for p in EXAMPLES.glob("*.loy")
)  # bubble_tea_plugins needs the plugins extra

SHOP = """program "Shop" { currency CNY timezone "Asia/Shanghai" }
rule "Base" on purchase { award 1 point per 1 CNY of net_amount }
rule "Big basket" on purchase when net_amount >= 100 { award 50 points }
rule "Never" on purchase when store == "NOWHERE" { award 1 point }
trigger "Hello" daily when days_since(member.joined) == 1 { send sms "hello" limit once per member }
"""


def run(*args: str):
    return CliRunner().invoke(cli.main, ["test", *args])


@pytest.fixture
def shop(tmp_path):
    (tmp_path / "shop.loy").write_text(SHOP, encoding="utf-8")
    return tmp_path


def write(folder: Path, text: str, name: str = "shop.test.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_example_program_has_a_passing_test_file(name):
    path = EXAMPLES / f"{name}.test.yaml"
    result = run(str(path), "--seed", "7", "--max-examples", "25")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    test = read_test_file(path)
    assert len(test.examples) >= 6 and test.invariants is not None and test.invariants.any
    # meaningful coverage: at least three quarters of the rules and every trigger fired
    program = load_program(test.program)
    line = next(line for line in result.output.splitlines() if line.startswith("coverage of"))
    fired_rules = int(line.split(": ")[1].split(" of ")[0])
    assert fired_rules >= 0.75 * len(program.checked.rules), line


def test_every_example_program_has_a_test_file():
    assert len(PROGRAMS) >= 4
    assert [n for n in PROGRAMS if not (EXAMPLES / f"{n}.test.yaml").exists()] == []


def test_a_directory_runs_every_test_file_in_it():
    result = run(str(EXAMPLES), "--no-invariants")
    assert result.exit_code == 0, result.output
    assert {line.split(" ", 1)[1].split(":")[0] for line in result.output.splitlines() if line.startswith("PASS")} == {
        str(EXAMPLES / f"{n}.test.yaml") for n in PROGRAMS
    }


def test_the_default_is_the_current_directory(shop, monkeypatch):
    write(shop, "examples:\n  - event: {at: 2026-05-04T10:00:00+08:00, amount: '20'}\n    expect: {points: 20}\n")
    monkeypatch.chdir(shop)
    result = run()
    assert result.exit_code == 0, result.output
    assert "PASS shop.test.yaml:2: example 1" in result.output


def test_a_broken_expectation_shows_the_diff_and_exits_1(shop):
    path = write(
        shop,
        """examples:
  - name: a big basket
    event:
      at: 2026-05-04T10:00:00+08:00
      amount: "120.00"
    expect:
      points: 150        # wrong on purpose: 120 + 50 = 170
      rules: [Base]
""",
    )
    result = run(str(path))
    assert result.exit_code == 1
    out = result.output
    assert f"FAIL {path}:2: a big basket" in out
    assert f"expected at {path}:6:" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    i = lines.index("points expected 150")
    assert lines[i + 1] == "actual 170"
    assert "rules expected [Base]" in lines and "actual [Base, Big basket]" in lines
    assert any("50 points bonus" in line for line in lines)  # the explanations show why
    assert "0 passed, 1 failed" in out


def test_events_carry_state_and_step_expectations(shop):
    path = write(
        shop,
        """member: {id: m-9, joined: 2026-05-01}
examples:
  - name: two purchases and a trigger day
    events:
      - {at: 2026-05-01T10:00:00+08:00, amount: "30"}
      - {at: 2026-05-01T11:00:00+08:00, amount: "100", expect: {points: 150, balance: 180}}
      - triggers: 2026-05-02
        expect: {rules: [Hello], messages: [hello]}
    expect: {points: 180, balance: {points: 180}, rules: [Base, Base, Big basket, Hello]}
""",
    )
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert "coverage of Shop: 2 of 3 rules, 1 of 1 triggers fired" in result.output
    assert "never fired: rule 'Never' (shop.loy:4)" in result.output.replace(str(path.parent) + "/", "")


def test_an_unexpected_refusal_is_a_failure_and_an_expected_one_passes(shop):
    path = write(
        shop,
        """examples:
  - name: refused
    event: {at: 2026-05-04T10:00:00+08:00, amount: "abc"}
    expect: {points: 0}
  - name: expected refusal
    event: {at: 2026-05-04T10:00:00+08:00, amount: "abc"}
    expect: {error: "amount"}
  - name: accepted but an error was expected
    event: {at: 2026-05-04T10:00:00+08:00, amount: "10"}
    expect: {error: "amount"}
""",
    )
    result = run(str(path))
    assert result.exit_code == 1
    assert "the event was refused: " in result.output and "amount:" in result.output
    assert f"PASS {path}:5: expected refusal" in result.output
    assert "the event was accepted" in result.output


@pytest.mark.parametrize(
    "text, line, message, hint",
    [
        ("examples:\n  - name: x\n    evnts: []\n", 3, "unknown key 'evnts' in an example", "did you mean 'events'?"),
        (
            "examples:\n  - event: {at: 2026-05-04T10:00:00+08:00}\n    expect: {pionts: 1}\n",
            3,
            "unknown key 'pionts' in 'expect'",
            "did you mean 'points'?",
        ),
        ("examples:\n  - event: {at: 2026-05-04T10:00:00+08:00\n    expect: {}\n", 3, "not valid YAML", "line 2"),
        ("examples:\n\t- name: x\n", 2, "not valid YAML", "spaces, not tabs"),
        ("examples:\n  - event: {at: 2026-05-04}\n    expect: {points: 1}\n", 2, "needs a time", None),
        ("examples:\n  - event: {at: '2026-05-04T10:00:00'}\n    expect: {points: 1}\n", 2, "no timezone", "+08:00"),
        ("invariants: {max_points_per_purchase: lots}\n", 1, "must be a whole number", None),
        ("programme: x.loy\nexamples: []\n", 1, "unknown key 'programme'", "did you mean 'program'?"),
    ],
)
def test_test_file_errors_have_file_line_and_hint(shop, text, line, message, hint):
    path = write(shop, text)
    with pytest.raises(TestFileError) as info:
        read_test_file(path)
    diag = next(d for d in info.value.diagnostics if message in d.message)
    assert diag.line == line and diag.path == str(path)
    if hint:
        assert hint in (diag.hint or ""), diag.render()
    rendered = CliRunner().invoke(cli.main, ["test", str(path)])
    assert rendered.exit_code == 1
    assert f"{path}:{line}:" in rendered.output and "cannot be run" in rendered.output


def test_a_missing_program_is_named(tmp_path):
    path = write(
        tmp_path, "examples:\n  - event: {at: 2026-05-04T10:00:00+08:00}\n    expect: {points: 1}\n", "x.test.yaml"
    )
    with pytest.raises(TestFileError) as info:
        read_test_file(path)
    assert "x.loy' does not exist" in str(info.value)


def test_no_test_files_is_an_error(tmp_path):
    result = run(str(tmp_path))
    assert result.exit_code == 1 and "no test files found" in result.output


# ------------------------------------------------------------------ invariants


def test_a_broken_invariant_prints_the_seed_and_a_shrunk_counterexample(shop):
    path = write(shop, "invariants:\n  examples: 50\n  max_points_per_purchase: 120\n  points_never_negative: true\n")
    result = run(str(path), "--seed", "3")
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"FAIL {path}:1: invariant max_points_per_purchase: 120 (seed 3)" in out
    # 1 point per CNY, + 50 from 100 CNY: below 100 CNY no cart earns more than 99, so the smallest
    # counterexample is one line at exactly 100.00 (150 points)
    assert "broken: the purchase earned 150 points, more than 120" in out
    assert "- {category: other, quantity: 1, unit_price: 100.00}" in out
    assert "rerun it with: loyalty test --seed 3" in out
    assert "PASS" in out and "invariant points_never_negative (50 generated purchases, seed 3)" in out


def test_the_same_seed_gives_the_same_counterexample(shop):
    path = write(shop, "invariants: {max_points_per_purchase: 120}\n")
    first, second = run(str(path), "--seed", "11"), run(str(path), "--seed", "11")
    assert first.output == second.output and "smallest counterexample" in first.output


def test_refund_and_monotone_invariants_catch_real_breakage(tmp_path):
    # A bonus for small baskets: buying more can earn less, so monotonicity is broken.
    (tmp_path / "odd.loy").write_text(
        'program "Odd" { currency CNY timezone "Asia/Shanghai" refunds keep bonuses }\n'
        'rule "Small basket" on purchase when net_amount < 50 { award 100 points }\n',
        encoding="utf-8",
    )
    path = write(
        tmp_path, "invariants: {full_refund_restores_member: true, earning_monotone_in_amount: true}\n", "odd.test.yaml"
    )
    result = run(str(path), "--seed", "5")
    assert result.exit_code == 1
    assert "invariant earning_monotone_in_amount (seed 5)" in result.output
    assert "100 points for the cart, but 0 with one more unit" in result.output
    # "refunds keep bonuses": the refunded purchase leaves its 100 points
    assert "invariant full_refund_restores_member (seed 5)" in result.output
    assert "after its full refund: points 100" in result.output


def test_generated_carts_use_the_programs_vocabulary():
    vocab = vocabulary(load_program(EXAMPLES / "supermarket_zh.loy"))
    assert {"生鲜", "蔬菜", "水果", "进口食品"} <= set(vocab.categories)
    assert vocab.tiers == [None, "普通会员", "银卡", "金卡"]
    assert vocab.balances == {"points": False, "cashback": True}
    hotel = vocabulary(load_program(EXAMPLES / "hotel.loy"))
    assert hotel.fields == {"nights": "number", "room_revenue": "money", "rate_code": "text"}
    assert "OTA" in hotel.texts["rate_code"]


def test_test_files_ship_beside_the_programs_in_the_wheel_layout(tmp_path):
    # the wheel force-includes dsl/examples: a copied folder runs the same
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target)
    result = run(str(target / "hotel.test.yaml"), "--no-invariants")
    assert result.exit_code == 0, result.output


def test_plugin_rewards_can_be_expected(tmp_path):
    pytest.importorskip("loyalty_cashback")
    (tmp_path / "back.loy").write_text(
        'program "Back" { currency CNY timezone "Asia/Shanghai" }\n'
        'rule "Cashback" on purchase { reward cashback(amount: net_amount * 2%, max: 5) }\n',
        encoding="utf-8",
    )
    event = "event: {at: 2026-05-04T10:00:00+08:00, amount: '150'}"
    good = write(
        tmp_path,
        f"examples:\n  - {event}\n    expect: {{rewards: ['cashback(amount: 3, max: 5)']}}\n",
        "back.test.yaml",
    )
    assert run(str(good)).exit_code == 0
    bad = write(tmp_path, f"examples:\n  - {event}\n    expect: {{rewards: []}}\n", "back.test.yaml")
    result = run(str(bad))
    assert result.exit_code == 1 and "actual   [cashback(amount: 3, max: 5)]" in result.output


def test_json_results_for_ci_tools(shop):
    path = write(
        shop,
        "examples:\n  - name: wrong\n    event: {at: 2026-05-04T10:00:00+08:00, amount: '120'}\n    expect: {points: 1}\n",
    )
    result = run(str(path), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert (data["passed"], data["failed"]) == (0, 1)
    (example,) = data["results"]
    assert (example["kind"], example["name"], example["line"], example["passed"]) == ("example", "wrong", 2, False)
    assert example["failures"][0]["mismatches"] == [{"key": "points", "expected": 1, "actual": 170}]
    assert data["coverage"][0]["never_fired"][0] == {"kind": "rule", "name": "Never", "location": f"{shop}/shop.loy:4"}
    broken = write(shop, "examples: {oops\n", "broken.test.yaml")
    data = json.loads(run(str(broken), "--json").output)
    assert data["results"][0]["kind"] == "file" and "not valid YAML" in data["results"][0]["errors"][0]["message"]


def test_a_program_given_instead_of_its_test_file_runs_the_tests_beside_it(shop):
    write(
        shop,
        "examples:\n  - name: big\n    events:\n"
        '      - {type: purchase, at: "2026-03-02T12:00:00+08:00", amount: "150"}\n'
        "    expect: {points: 200}\n",
    )
    result = run(str(shop / "shop.loy"), "--no-invariants")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "1 passed" in result.output


def test_a_program_without_a_test_file_says_where_to_write_one(shop):
    result = run(str(shop / "shop.loy"))
    assert result.exit_code == 1
    assert "shop.test.yaml:1:1: error: no such test file" in result.output
    assert "hint: write the examples for shop.loy in shop.test.yaml, beside it" in result.output
