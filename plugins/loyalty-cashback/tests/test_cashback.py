"""The cashback reward type against a real engine (fixtures from loyalty_engine.testing)."""

from decimal import Decimal

import loyalty_cashback

from loyalty_engine.testing import assert_ledger_consistent, check_rules, purchase, refund

RULES = """
rule "Base" on purchase { award 1 point per 1 CNY of net_amount }
rule "Coffee cashback" on purchase when any item where category == "coffee" {
  reward cashback(amount: sum(amount of items where category == "coffee") * 5%, max: 20)
}
"""
BASKET = (("LATTE", "coffee", 2, "32.00"), ("CAKE", "food", 1, "28.00"))


def wallet(engine, member="m-1"):
    return engine.member(member).rewards.get("cashback", {}).get("CNY", Decimal(0))


def test_rules_check_only_with_the_plugin():
    assert check_rules(RULES, [loyalty_cashback]).ok
    errors = check_rules(RULES).errors
    assert errors and "cashback" in errors[0].message


def test_cashback_is_credited_once_per_event(make_engine):
    engine = make_engine(RULES, [loyalty_cashback])
    result = engine.process(purchase("t-1", "m-1", *BASKET))
    assert result.points == 92
    assert wallet(engine) == Decimal("3.20")  # 5% of the 64.00 of coffee
    engine.process(purchase("t-1", "m-1", *BASKET))  # a retry pays nothing twice
    assert wallet(engine) == Decimal("3.20")


def test_max_caps_one_purchase(make_engine):
    engine = make_engine(RULES, [loyalty_cashback])
    engine.process(purchase("t-1", "m-1", ("MACHINE", "coffee", 1, "900.00")))
    assert wallet(engine) == Decimal("20")


def test_partial_refund_takes_back_the_returned_lines_share(make_engine):
    engine = make_engine(RULES, [loyalty_cashback])
    engine.process(purchase("t-1", "m-1", *BASKET))
    engine.process(refund("r-1", "t-1", "m-1", ("CAKE", 1)))  # no coffee back: the cashback stays
    assert wallet(engine) == Decimal("3.20")
    engine.process(refund("r-2", "t-1", "m-1", ("LATTE", 1)))  # half the coffee back
    assert wallet(engine) == Decimal("1.60")
    engine.process(refund("r-3", "t-1", "m-1", ("LATTE", 1)))
    assert wallet(engine) == 0
    assert_ledger_consistent(engine)


def test_nothing_granted_on_zero(make_engine):
    engine = make_engine('rule "Zero" on purchase { reward cashback(amount: 0) }', [loyalty_cashback])
    result = engine.process(purchase("t-1", "m-1", *BASKET))
    assert wallet(engine) == 0
    assert any("nothing granted" in note for note in result.notes)
