"""`program.explain(...)` and `loyalty explain`: every rule, why it applied or not, and how points were computed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from loyalty_engine import Trace, cli, load_program, structure_context, structure_event

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "dsl" / "examples"
EVENTS = EXAMPLES / "events"


def sample(name: str, member: dict | None = None, event: dict | None = None):
    program = load_program(EXAMPLES / f"{name}.loy")
    data = json.loads((EVENTS / f"{name}.purchase.json").read_text(encoding="utf-8"))
    ev = structure_event({**data, **(event or {})}, program.event_types)
    m = member if member is not None else json.loads((EVENTS / f"{name}.member.json").read_text(encoding="utf-8"))
    return program, ev, structure_context(m, program.checked.schema.member_attributes)


def test_the_trace_lists_every_rule_in_evaluation_order_with_its_reason():
    program, ev, ctx = sample("coffee_chain")
    trace = program.explain(ev, ctx)
    assert isinstance(trace, Trace)
    assert [r.name for r in trace.rules] == [p.rule.name for p in program.code.events["purchase"].rules]
    assert trace.rule("Base earn").applied and trace.rule("Birthday bonus").applied
    big = trace.rule("Big basket")
    assert big.status == "condition_false"
    assert [c.describe() for c in big.conditions] == ["net_amount 110.50 >= 200: false"]
    afternoon = trace.rule("Afternoon pick-me-up")
    assert [c.describe() for c in afternoon.conditions] == [
        "hour(at) 8 >= 14: false",
        "hour(at) 8 < 17: true",
        "weekday(today) wednesday <= friday: true",
    ]
    punch = trace.rule("Punch card full").conditions[0]
    assert (punch.left, punch.left_value, punch.passed) == (
        'member.stamps + count(items where category == "coffee")',
        Decimal(3),
        False,
    )
    assert trace.points == 453 == sum(int(e.points) for r in trace.rules for e in r.effects if e.balance == "points")


def test_the_points_calculation_shows_rates_multipliers_rounding():
    program, ev, ctx = sample("coffee_chain")
    points = next(b for b in program.explain(ev, ctx).balances if b.balance == "points")
    assert (points.rate_awards, points.multiplier, points.fixed_awards) == (Decimal("202.50"), Decimal("1.25"), 200)
    assert (points.before_rounding, points.rounded, points.total) == (Decimal("453.125"), 453, 453)
    assert points.steps == (
        "rate awards: 110.50 (Base earn) + 92 (Coffee double) = 202.50",
        "multiplied by 1.25 (silver tier) = x1.25: 253.125",
        "fixed awards (not multiplied): 200 (Birthday bonus) = 200",
        "together: 453.125",
        "rounded once (floor): 453.125 -> 453",
        "total: 453 points",
    )


def test_a_cap_shows_what_it_cut():
    program, ev, ctx = sample(
        "coffee_chain", event={"items": [{"sku": "X", "category": "beans", "quantity": 1, "unit_price": "6000"}]}
    )
    points = next(b for b in program.explain(ev, ctx).balances if b.balance == "points")
    # 6000 x 1.25 silver = 7500 + 200 birthday = 7700, capped at 5000 per transaction
    assert points.cut == 2700 and points.total == 5000
    assert "capped (5000 per transaction, 8000 per day): 2700 over the cap -> 5000" in points.steps


def test_limits_dates_groups_and_budgets_that_stopped_a_rule():
    program, ev, ctx = sample(
        "coffee_chain",
        member={
            "id": "m-1",
            "birthday": "1990-05-01",
            "context": {"history": {"rule:Birthday bonus": ["2026-05-02T10:00:00+08:00"]}},
        },
        event={"items": [{"sku": "B", "category": "beans", "quantity": 1, "unit_price": "250"}]},
    )
    trace = program.explain(ev, ctx)
    assert trace.rule("Birthday bonus").status == "limit_reached"
    assert trace.rule("Birthday bonus").reason == "limit once per year reached (fired 1 time before)"
    spent = structure_context({"id": "m-1", "context": {"budgets": {"rule:Big basket": 2000}}})
    big = program.explain(ev, spent).rule("Big basket")
    assert big.status == "budget_spent" and big.reason == "the budget of 2000 coupons of rule 'Big basket' is used up"

    fashion, ev, ctx = sample("fashion_retailer")
    trace = fashion.explain(ev, ctx)
    lyon = trace.rule("Lyon opening")
    assert lyon.status == "not_in_dates" and "(2026-09-01 to 2026-10-31)" in lyon.reason
    kids = trace.rule("Kids collection bonus")
    assert "the dates of campaign 'Back to School'" in kids.reason and kids.campaign == "Back to School"
    lost = trace.rule("Welcome: first purchase")
    assert lost.status == "lost_in_group"
    assert lost.reason == "group 'Welcome' picks the best offer: 'Welcome: newsletter subscriber' gives more"


def test_a_pick_first_group_says_which_rule_came_first(tmp_path):
    path = tmp_path / "g.loy"
    path.write_text(
        'program "G" { currency CNY timezone "Asia/Shanghai" }\n'
        'group "Basket" pick first\n'
        'rule "B500" on purchase when net_amount >= 500 { award 300 points group "Basket" priority 2 }\n'
        'rule "B150" on purchase when net_amount >= 150 { award 50 points group "Basket" priority 1 }\n',
        encoding="utf-8",
    )
    program = load_program(path)
    ev = structure_event(
        {"id": "t", "type": "purchase", "member": "m", "at": "2026-05-04T10:00:00+08:00", "amount": "600"},
        program.event_types,
    )
    trace = program.explain(ev)
    assert trace.rule("B150").status == "group_taken"
    assert trace.rule("B150").reason == "group 'Basket' picks the first rule that applies: 'B500' came first"


@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".purchase.json") for p in EVENTS.glob("*.purchase.json")))
def test_the_trace_agrees_with_the_outcome(name):
    program, ev, ctx = sample(name)
    trace = program.explain(ev, ctx)
    outcome = program.evaluate(ev, ctx)
    assert {b.balance: b.total for b in trace.balances} == outcome.totals
    assert [r.name for r in trace.rules if r.applied] == outcome.fired
    assert trace.coupons == outcome.coupons
    data = trace.to_dict()
    json.dumps(data, ensure_ascii=False)
    assert data["points"] == outcome.points and len(data["rules"]) == len(trace.rules)


def test_loyalty_explain_text_and_json():
    args = [
        "explain",
        str(EXAMPLES / "supermarket_zh.loy"),
        "--event",
        str(EVENTS / "supermarket_zh.purchase.json"),
        "--member",
        str(EVENTS / "supermarket_zh.member.json"),
    ]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "applied  生鲜双倍积分" in result.output
    assert "- weekday(today) wednesday == wednesday: true" in result.output
    assert '- count(items where category in ["蔬菜", "水果"]) 6 >= 5: true' in result.output
    assert "rounded once (floor): 318.00 -> 318" in result.output or "total: 318 points" in result.output
    data = json.loads(CliRunner().invoke(cli.main, [*args, "--json"]).output)
    rule = next(r for r in data["rules"] if r["rule"] == "满篮奖励")
    assert rule["status"] == "condition_false"
    assert rule["conditions"][0]["explanation"] == "count(lines) 6 >= 10: false"


def test_loyalty_explain_refuses_a_bad_event_naming_the_field(tmp_path):
    bad = tmp_path / "e.json"
    bad.write_text('{"id": "t", "type": "purchase", "member": "m", "at": "2026-05-04T10:00:00+08:00", "amount": "x"}')
    result = CliRunner().invoke(cli.main, ["explain", str(EXAMPLES / "coffee_chain.loy"), "--event", str(bad)])
    assert result.exit_code == 2 and "amount" in result.output


def test_the_daily_trigger_run_is_explained_too(tmp_path):
    import datetime as dt

    program = load_program(EXAMPLES / "hotel.loy")
    member = {
        "id": "m-1",
        "tier": "gold",
        "context": {"expiring": {"points": [{"date": "2026-06-20", "amount": 5000}]}},
    }
    monday = dt.datetime.fromisoformat("2026-06-01T09:00:00-04:00")
    ctx = structure_context(member, program.checked.schema.member_attributes)
    trace = program.explain_triggers(ctx, monday)
    assert trace.event is None and [r.name for r in trace.rules] == [t.name for t in program.checked.triggers]
    assert trace.rule("Points expiring").applied  # a Monday, 5000 points expiring within 30 days
    assert trace.rule("Welcome back").status == "condition_false"  # the 1st: due, but never stayed
    tuesday = program.explain_triggers(ctx, monday + dt.timedelta(days=1))
    assert tuesday.rule("Points expiring").status == "not_scheduled"
    assert tuesday.rule("Points expiring").reason == "runs weekly on mondays; 2026-06-02 is not one"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(member))
    args = [
        "explain",
        str(EXAMPLES / "hotel.loy"),
        "--triggers",
        "--member",
        str(path),
        "--as-of",
        "2026-06-02T09:00:00-04:00",
    ]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "daily trigger run for m-1 (tier gold) on 2026-06-02" in result.output
    assert "runs weekly on mondays; 2026-06-02 is not one" in result.output
    neither = CliRunner().invoke(cli.main, ["explain", str(EXAMPLES / "hotel.loy")])
    assert neither.exit_code == 2 and "give --event EVENT.json, or --triggers" in neither.output
