"""Hostile rule files: deep nesting, huge files, garbage. Clean errors, never a traceback or a hang."""

import datetime as dt
import random
import time
from pathlib import Path

import pytest

from loyalty_engine.language import parser
from loyalty_engine.program import check_program

HEADER = 'program "T" { currency CNY  timezone "Asia/Shanghai" }\n'


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_deep_nesting_fails_with_a_documented_error(depth):
    cond = "(" * depth + "net_amount > 1" + ")" * depth
    negs = "not " * depth + "true"
    minus = "-" * depth + "1"
    for body in (cond, negs, f"net_amount > {minus}"):
        start = time.perf_counter()
        result = check_program("deep.loy", text=HEADER + f'rule "R" on purchase when {body} {{ award 1 point }}\n')
        elapsed = time.perf_counter() - start
        if result.errors:
            assert any("nested too deeply" in d.message for d in result.errors), result.errors[0].render()
        assert elapsed < 10


def test_parenthesised_depth_within_limit_compiles_and_runs():
    from loyalty_engine.program import load_program
    from tests.conftest import member, purchase

    body = "(" * 40 + "net_amount > 1" + ")" * 40
    program = load_program("ok.loy", text=HEADER + f'rule "R" on purchase when {body} {{ award 3 points }}\n')
    assert program.evaluate(purchase(("A", "x", 1, "5.00")), member()).points == 3


def test_five_megabyte_file_is_refused_clearly(tmp_path):
    rule = 'rule "R{}" on purchase when net_amount >= {} {{ award 1 point }}\n'
    text = HEADER + "".join(rule.format(i, i) for i in range(80_000))
    assert len(text.encode()) > 5_000_000
    path = tmp_path / "big.loy"
    path.write_text(text, encoding="utf-8")
    result = check_program(path)
    assert len(result.errors) == 1
    assert "too large" in result.errors[0].message
    assert result.errors[0].hint


def test_random_garbage_gives_only_positioned_errors():
    rng = random.Random(20261123)
    print("seed 20261123")
    alphabet = 'rule "x" on purchase when { } award points per 1 CNY of ( ) [ ] , . == >= 10 % and or not any item where 2026-01-01 \n#'
    base = HEADER + 'rule "A" on purchase when net_amount >= 100 { award 1 point per 1 CNY of net_amount }\n'
    for _ in range(300):
        chars = list(base)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                del chars[pos]
            elif op < 0.8:
                chars.insert(pos, rng.choice(alphabet))
            else:
                chars[pos] = rng.choice(alphabet)
        text = "".join(chars)
        start = time.perf_counter()
        result = check_program("fuzz.loy", text=text)
        assert time.perf_counter() - start < 1.0
        for diag in result.diagnostics:
            assert diag.line >= 1 and diag.column >= 1
            assert diag.render().startswith(f"fuzz.loy:{diag.line}:{diag.column}: ")


def test_limits_are_documented_constants():
    assert parser.MAX_FILE_BYTES == 1_048_576
    assert parser.MAX_NESTING >= 40


def test_an_amount_that_outgrows_decimal_precision_says_so_in_words():
    from loyalty_engine.errors import EvaluationError
    from loyalty_engine.program import load_program
    from loyalty_engine.wire import structure_event

    program = load_program(
        "mul.loy",
        text=HEADER
        + 'rule "A" on purchase { award 1 point per 1 CNY of net_amount }\n'
        + 'rule "M1" on purchase { multiply points by 999999999999999 }\n'
        + 'rule "M2" on purchase { multiply points by 999999999999999 }\n',
    )
    event = structure_event(
        {"id": "t", "type": "purchase", "member": "m", "at": "2026-06-02T12:00:00+08:00", "amount": "10"}
    )
    with pytest.raises(EvaluationError) as info:
        program.evaluate(event)
    assert "a computed amount is too large (more than 28 significant digits)" in str(info.value)
    assert "<class" not in str(info.value)


def test_a_rule_that_fails_while_evaluating_is_named_with_its_location():
    from loyalty_engine.errors import EvaluationError
    from loyalty_engine.model import Member, MemberContext
    from loyalty_engine.program import load_program
    from loyalty_engine.wire import structure_event

    program = load_program(
        "score.loy",
        text=HEADER
        + 'rule "A" on purchase { award 1 point per 1 CNY of net_amount }\n'
        + 'rule "B" on purchase when score("churn_risk") > 0.5 {\n  award 10 points\n}\n'
        + 'rule "C" on purchase { award 2 points }\n'
        + 'trigger "T" daily when score("churn_risk") > 0.5 { send sms "hi"  limit once per 30 days }\n',
    )
    event = structure_event(
        {"id": "t", "type": "purchase", "member": "m", "at": "2026-06-02T12:00:00+08:00", "amount": "10"}
    )
    context = MemberContext(Member("m"), scores={"churn_risk": "high"})  # a model that returned text
    with pytest.raises(EvaluationError) as info:
        program.evaluate(event, context)
    assert info.value.rule == "B" and info.value.location == "score.loy:3:1"
    assert str(info.value).startswith("score.loy:3:1: evaluation failed: TypeError")
    assert str(info.value).endswith("(rule 'B')")
    with pytest.raises(EvaluationError) as info:
        program.run_triggers(context, dt.datetime(2026, 6, 2, tzinfo=dt.UTC))
    assert info.value.rule == "T" and info.value.location == "score.loy:7:1"


@pytest.mark.parametrize("path", sorted(Path("dsl/examples").glob("*.loy")) + [Path("benchmarks/triggers.loy")])
def test_every_rule_knows_where_its_generated_code_starts(path):
    from loyalty_engine.program import load_program

    program = load_program(path)
    plans = [*program.code.events.values(), *([program.code.triggers] if program.code.triggers else [])]
    module = "\n\n".join(plan.source for plan in plans).split("\n")  # as the compiler joins them
    for plan in plans:
        assert len(plan.rule_lines) == len(plan.rules)
        for (first, last, rule), rule_plan in zip(plan.rule_lines, plan.rules):
            assert rule is rule_plan.rule and first <= last
            assert module[first - 1].strip() == f"_r{rule_plan.position} = None"
            assert plan.rule_at(first) is rule and plan.rule_at(last) is rule
