"""`loyalty describe`: the customer terms and the cashier sheet carry the checked program's own numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from loyalty_engine import cli, load_program
from loyalty_engine.language import ast
from loyalty_engine.workbench.describe import cashier_sheet, describe, factor, num

EXAMPLES = Path(__file__).resolve().parent.parent / "dsl" / "examples"
PROGRAMS = sorted(
    p.name.removesuffix(".loy") for p in EXAMPLES.glob("*.loy")
)  # bubble_tea_plugins needs the plugins extra


def facts(program) -> list[tuple[str, str]]:
    """(what, text that must appear) for every number and name of the checked program."""
    p = program.checked
    out = []
    for rule in p.rules:
        out.append((f"rule {rule.name}", rule.name))
        for action in rule.actions:
            if isinstance(action, ast.Award) and isinstance(action.amount, ast.Literal):
                shown = f"{num(action.amount.value)}%" if action.amount.kind == "percent" else num(action.amount.value)
                if action.amount.kind == "percent":
                    shown = f"{num(action.amount.value * 100)}%"
                out.append((f"{rule.name}: award", shown.lstrip("-")))
                if action.per is not None:
                    out.append((f"{rule.name}: per", f"per {num(action.per)}" if False else num(action.per)))
                if action.up_to is not None:
                    out.append((f"{rule.name}: up to", num(action.up_to)))
            elif isinstance(action, ast.Multiply) and isinstance(action.factor, ast.Literal):
                value = factor(action.factor.value)
                out.append((f"{rule.name}: multiply", value))
            elif isinstance(action, ast.Cap):
                out.append((f"{rule.name}: cap", num(action.amount)))
            elif isinstance(action, ast.IssueCoupon):
                out.append((f"{rule.name}: coupon", action.coupon.name))
        for limit in rule.limits:
            if limit.times > 1:
                out.append((f"{rule.name}: limit", str(limit.times)))
        for day in (rule.valid_from, rule.valid_to):
            if day:
                out.append((f"{rule.name}: dates", day.isoformat()))
    if p.tiers:
        for level in p.tiers.levels:
            out.append((f"tier {level.name.name}", level.name.name))
            out.append((f"tier {level.name.name} threshold", num(level.threshold)))
            if level.multiplier:
                out.append((f"tier {level.name.name} multiplier", factor(level.multiplier)))
    for code, c in p.coupons.items():
        out.append((f"coupon {code}", code))
        if c.discount_kind in ("percent", "amount"):
            out.append((f"coupon {code} value", num(c.discount_value)))
        if c.min_spend is not None:
            out.append((f"coupon {code} min spend", num(c.min_spend)))
        if c.valid_days is not None:
            out.append((f"coupon {code} validity", f"{c.valid_days} "))
        if c.valid_until is not None:
            out.append((f"coupon {code} validity", c.valid_until.isoformat()))
        for category in c.categories:
            out.append((f"coupon {code} category", category))
    for name, campaign in p.campaigns.items():
        out.append((f"campaign {name}", name))
        for day in (campaign.valid_from, campaign.valid_to):
            if day:
                out.append((f"campaign {name} dates", day.isoformat()))
    for name, info in p.balances.items():
        if info.expiry is not None and info.expiry.kind == "after":
            out.append((f"{name} expiry", f"{info.expiry.amount} "))
        if info.pending_days:
            out.append((f"{name} pending", f"{info.pending_days} "))
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_the_terms_carry_every_number_of_the_program(name, lang):
    program = load_program(EXAMPLES / f"{name}.loy")
    text = describe(program, lang)
    missing = [(what, shown) for what, shown in facts(program) if shown not in text]
    assert not missing, f"{name} ({lang}) terms lack:\n" + "\n".join(f"  {w}: {s!r}" for w, s in missing) + "\n" + text
    for trigger in program.checked.triggers:
        assert trigger.name in text


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_cashier_sheet_carries_the_purchase_rules_tiers_coupons_and_caps(name):
    program = load_program(EXAMPLES / f"{name}.loy")
    for lang in ("en", "zh"):
        sheet = cashier_sheet(program, lang)
        wanted = [
            (what, shown)
            for what, shown in facts(program)
            if not what.startswith("campaign ") and "expiry" not in what and "pending" not in what
        ]
        missing = [(w, s) for w, s in wanted if s not in sheet]
        assert not missing, f"{name} ({lang}) cashier sheet lacks: {missing}\n{sheet}"
        assert len(sheet.splitlines()) <= 60, "one page"


def test_a_changed_rate_changes_the_text(tmp_path):
    source = (EXAMPLES / "coffee_chain.loy").read_text(encoding="utf-8")
    changed = tmp_path / "coffee.loy"
    changed.write_text(source.replace("earn x1.25", "earn x1.3").replace("from 5000", "from 6000"), encoding="utf-8")
    before = describe(load_program(EXAMPLES / "coffee_chain.loy"))
    after = describe(load_program(changed))
    assert "silver: from 1,000 CNY; earn 1.25x points" in before
    assert "silver: from 1,000 CNY; earn 1.3x points" in after and "gold: from 6,000 CNY" in after


def test_sentences_for_the_common_conditions():
    en = describe(load_program(EXAMPLES / "coffee_chain.loy"))
    assert "- Big basket: coupon BIG10 (10% off your next order) when you spend at least 200 CNY" in en
    assert "- Birthday bonus: 200 bonus points in your birthday month (once per year)" in en
    assert "Points expire 24 months after your last activity." in en
    zh = describe(load_program(EXAMPLES / "supermarket_zh.loy"), "zh")
    assert "- 基础积分: 每消费 1 元积 1 积分" in zh
    assert "- 满额送券: 消费满 100 元，优惠券 MAN100JIAN10 (满100减10元券)" in zh
    assert "- 周末蔬果: 每周六、周日，购买蔬菜、水果满 5 件，赠送 30 积分 (每周限一次)" in zh
    assert "积分每年 12 月 31 日清零" in zh


def test_loyalty_describe_command():
    runner = CliRunner()
    result = runner.invoke(cli.main, ["describe", str(EXAMPLES / "supermarket_zh.loy"), "--lang", "zh"])
    assert result.exit_code == 0 and result.output.startswith("# 鲜丰超市会员计划 会员条款")
    sheet = runner.invoke(cli.main, ["describe", str(EXAMPLES / "hotel.loy"), "--cashier"])
    assert sheet.exit_code == 0 and "Harbor & Pine Rewards — cashier sheet (USD, America/New_York)" in sheet.output
    bad = runner.invoke(cli.main, ["describe", str(EXAMPLES / "hotel.loy"), "--lang", "fr"])
    assert bad.exit_code == 2 and "'fr' is not one of 'en', 'zh'" in bad.output
