"""Invariants under random baskets (hypothesis prints a failing example; seeds are derandomised)."""

import datetime as dt
from decimal import ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.program import load_program
from tests.conftest import SHANGHAI, member, purchase

PROGRAM = load_program(
    "props.loy",
    text=(
        'program "P" { currency CNY  timezone "Asia/Shanghai"  balance cashback money }\n'
        "tiers by spend over last 12 months { member from 0  silver from 1000 earn x1.25  gold from 5000 earn x1.5 }\n"
        'rule "Base" on purchase { award 1 point per 1 CNY of net_amount }\n'
        'rule "Coffee" on purchase when any item where category == "coffee" {\n'
        '  award 2 points per 1 CNY of items where category == "coffee" up to 400 }\n'
        'rule "Tue" on purchase when weekday(today) == tuesday { multiply points by 2 }\n'
        'rule "Big" on purchase when net_amount >= 300 { award 88 points }\n'
        'rule "Back" on purchase { award 3% of net_amount as cashback }\n'
        'rule "Cap" on purchase { cap points at 3000 }\n'
    ),
)

cents = st.integers(min_value=0, max_value=200_000)
lines = st.lists(
    st.tuples(st.sampled_from(["coffee", "tea", "bakery"]), st.integers(1, 5), cents), min_size=0, max_size=12
)
days = st.integers(min_value=0, max_value=400)
tiers = st.sampled_from([None, "member", "silver", "gold"])


def build(basket, day, tier):
    at = dt.datetime(2026, 1, 1, 12, tzinfo=SHANGHAI) + dt.timedelta(days=day)
    items = [(f"S{i}", cat, qty, str(Decimal(c) / 100)) for i, (cat, qty, c) in enumerate(basket)]
    return purchase(*items, at=at), member(tier)


def reference(basket, day, tier):
    """The same program by hand, in integer cents."""
    at = dt.date(2026, 1, 1) + dt.timedelta(days=day)
    total = sum(qty * c for _, qty, c in basket)
    coffee = sum(qty * c for cat, qty, c in basket if cat == "coffee")
    earn = Decimal(total) / 100
    if coffee:
        earn += min(Decimal(2 * coffee) / 100, Decimal(400))
    mult = {"silver": Decimal("1.25"), "gold": Decimal("1.5")}.get(tier, Decimal(1))
    if at.weekday() == 1:
        mult *= 2
    bonus = 88 if total >= 30_000 else 0
    points = int((earn * mult + bonus).to_integral_value(ROUND_FLOOR))
    return min(points, 3000), (Decimal(total * 3) / 10_000).quantize(Decimal("0.01"), ROUND_FLOOR)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(lines, days, tiers)
def test_matches_an_integer_cents_reference(basket, day, tier):
    event, ctx = build(basket, day, tier)
    outcome = PROGRAM.evaluate(event, ctx)
    points, cashback = reference(basket, day, tier)
    assert outcome.points == points
    assert outcome.total("cashback") == cashback


@settings(max_examples=300, deadline=None, derandomize=True)
@given(lines, days, tiers)
def test_effects_add_up_to_the_totals_and_evaluation_is_pure(basket, day, tier):
    event, ctx = build(basket, day, tier)
    first = PROGRAM.evaluate(event, ctx)
    again = PROGRAM.evaluate(event, ctx)
    assert first.to_dict() == again.to_dict()
    for balance, total in first.totals.items():
        shares = sum((e.points for e in first.effects if e.balance == balance and e.points is not None), Decimal(0))
        assert shares == total
        assert all(e.points >= 0 for e in first.effects if e.type == "award" and e.balance == balance)
