"""Engine.process: idempotency, conflicts, preview, refunds, bonus policies, debts, pending points, transfers."""

import datetime as dt
from decimal import Decimal

import attrs
import pytest

from loyalty_engine.errors import ConflictError, InputError, RefusedError
from tests.engine_kit import BASE, at, dump, make_engine, purchase, state

BONUS = 'rule "bonus" on purchase when net_amount >= 100 { award 50 points }\n'


def refund(event_id, original, member="m1", items=(), day=2):
    return {
        "id": event_id,
        "type": "refund",
        "member": member,
        "original": original,
        "at": at(day).isoformat(),
        "items": [{"sku": s, "quantity": q} for s, q in items],
    }


def balance(engine, member="m1", name="points", day=20):
    return engine.member(member, at=at(day)).balances[name]


def check_invariants(engine) -> None:
    """Every balance is the sum of its entries; open lots add up to a non-negative balance; no lot below zero."""
    store = engine.store
    sums = store.ledger_sums()
    for (member_id, name), total in sums.items():
        record = store.load_member(member_id)
        assert record.balances.get(name, Decimal(0)) == total, (member_id, name)
    for (member_id,) in store.conn.execute("SELECT id FROM members").fetchall():
        record = store.load_member(member_id)
        for name, value in record.balances.items():
            assert sums.get((member_id, name), Decimal(0)) == value
            lots = store.open_lots(member_id, name)
            assert all(lot.remaining >= 0 for lot in lots)
            if value >= 0:
                assert sum((lot.remaining for lot in lots), Decimal(0)) == value, (member_id, name)
    assert store.conn.execute("SELECT count(*) FROM lots WHERE CAST(remaining AS REAL) < 0").fetchone()[0] == 0


# ------------------------------------------------------------------ idempotency and conflicts


def test_same_event_twice_applies_once_and_returns_the_same_result():
    engine = make_engine(BASE + BONUS)
    first = engine.process(purchase("t1"))
    assert first.points == 155 and not first.duplicate
    before = dump(engine)
    again = engine.process(purchase("t1"))
    assert again.duplicate
    assert attrs.evolve(again, duplicate=False) == first  # identical, entries included
    assert again.to_dict() == dict(first.to_dict(), duplicate=True)
    assert dump(engine) == before
    assert balance(engine).total == 155
    check_invariants(engine)


def test_duplicate_is_recognised_with_items_in_json_or_objects():
    engine = make_engine()
    event = engine.to_event(purchase("t1"))
    engine.process(event)
    assert engine.process(purchase("t1")).duplicate
    assert balance(engine).total == 105


def test_same_id_other_payload_is_a_conflict_and_writes_nothing():
    engine = make_engine()
    engine.process(purchase("t1"))
    before = dump(engine)
    with pytest.raises(ConflictError):
        engine.process(purchase("t1", items=(("A", "food", 3, "30.00"),)))
    with pytest.raises(ConflictError):
        engine.process(purchase("t1", member="m2"))
    with pytest.raises(ConflictError):  # a refund reusing a purchase's id
        engine.process(refund("t1", "t1"))
    assert dump(engine) == before
    assert engine.store.load_member("m2") is None


def test_operation_reference_conflicts_with_an_event_id():
    engine = make_engine()
    engine.process(purchase("t1"))
    with pytest.raises(ConflictError):
        engine.redeem_points("m1", 10, reference="t1", at=at(2))
    assert balance(engine).total == 105


def test_bad_event_type_is_an_input_error_and_writes_nothing():
    engine = make_engine()
    before = dump(engine)
    with pytest.raises(InputError):
        engine.process({"id": "x", "type": "purchse", "member": "m1", "at": at(1).isoformat()})
    assert dump(engine) == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"discount": "500"}, "'discount' (500) is more than the amount (105.50)"),  # would earn negative points
        ({"items": [{"sku": "A", "quantity": 10**20, "unit_price": "0"}]}, "'quantity' must be below"),
        ({"items": [{"sku": "A", "quantity": 1, "unit_price": "1e30"}]}, "'unit_price' must be below"),
        ({"member": ""}, "'member' must not be empty"),
    ],
)
def test_out_of_range_purchases_are_input_errors_and_write_nothing(change, message):
    engine = make_engine()
    before = dump(engine)
    for call in (engine.preview, engine.process):
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call({**purchase("t1"), **change})
    assert dump(engine) == before


def test_what_is_not_an_event_object_is_an_input_error_that_names_it():
    engine = make_engine()
    before = dump(engine)
    for call in (engine.preview, engine.process):
        for bad in ('{"id": "t1"}', None, ["t1"]):
            with pytest.raises(InputError, match="expected a JSON object for the event"):
                call(bad)
        with pytest.raises(InputError, match="items: must be a list of line items"):
            call({**purchase("t1"), "items": "LATTE"})
    with pytest.raises(InputError, match="expected a JSON object for the member"):
        engine.upsert_member("m1")
    for when in (dt.date(2026, 5, 1), "2026-05-01T10:00:00+08:00"):
        with pytest.raises(InputError, match="at: must be a timezone-aware datetime"):
            engine.adjust("m1", 5, "goodwill", "adj-1", at=when)
    assert dump(engine) == before


# ------------------------------------------------------------------ preview


def test_preview_writes_nothing_for_a_new_or_a_known_member():
    engine = make_engine(BASE + BONUS)
    before = dump(engine)
    outcome = engine.preview(purchase("t1"))
    assert outcome.points == 155
    assert dump(engine) == before
    assert engine.store.load_member("m1") is None
    engine.process(purchase("t1"))
    before = dump(engine)
    assert engine.preview(purchase("t2", day=2)).points == 155
    assert engine.preview(purchase("t1")).points == 155  # previewing a processed id changes nothing either
    assert dump(engine) == before


def test_preview_sees_statistics_before_the_event():
    rules = BASE + 'rule "first" on purchase when purchases over lifetime == 0 { award 100 points }\n'
    engine = make_engine(rules)
    assert engine.preview(purchase("t1")).points == 205
    engine.process(purchase("t1"))
    assert engine.preview(purchase("t2", day=2)).points == 105


# ------------------------------------------------------------------ refunds


def test_full_refund_reverses_everything():
    engine = make_engine(BASE + BONUS)
    engine.process(purchase("t1"))
    result = engine.process(refund("r1", "t1"))
    assert result.status == "applied"
    assert result.points == -155
    assert balance(engine).total == 0
    assert engine.member("m1", at=at(3)).lifetime.get("spend", Decimal(0)) == 0
    check_invariants(engine)


def test_partial_refund_by_quantity_is_proportional_and_adds_up_exactly():
    engine = make_engine(BASE)
    engine.process(purchase("t1"))  # 105.50 -> 105 points
    first = engine.process(refund("r1", "t1", items=(("A", 1),)))  # 30 of 105.50
    assert first.points == -29  # 105 * 30 / 105.5 = 29.86, never more than earned
    second = engine.process(refund("r2", "t1", items=(("A", 1),)))
    assert second.points == -30  # cumulative: 105 * 60 / 105.5 = 59.7 -> 59 in all
    third = engine.process(refund("r3", "t1", items=(("B", 1),)))
    assert third.points == -46  # the last line takes back exactly what is left
    assert balance(engine).total == 0
    check_invariants(engine)


def test_refund_by_line_reverses_only_what_that_line_earned():
    rules = BASE + 'rule "food x2" on purchase { award 1 point per 1 CNY of items where category == "food" }\n'
    engine = make_engine(rules)
    assert engine.process(purchase("t1")).points == 165  # 105.5 + 60 = 165.5
    result = engine.process(refund("r1", "t1", items=(("B", 1),)))  # the drink: no food points
    assert {e["rule"] for e in result.entries} == {"base"}
    assert result.points == -45
    result = engine.process(refund("r2", "t1", items=(("A", 2),)))
    assert balance(engine).total == 0
    check_invariants(engine)


def test_refund_of_more_than_was_bought_is_capped_and_noted():
    engine = make_engine()
    engine.process(purchase("t1"))
    result = engine.process(refund("r1", "t1", items=(("A", 5),)))
    assert any("not left to return" in n for n in result.notes)
    assert result.points == -59  # both A's: 105 * 60 / 105.5 = 59.7 -> 59
    assert balance(engine).total == 105 + result.points


def test_refund_of_unknown_sku_is_refused_and_writes_nothing():
    engine = make_engine()
    engine.process(purchase("t1"))
    before = state(engine)
    with pytest.raises(RefusedError) as info:
        engine.process(refund("r1", "t1", items=(("ZZZ", 1),)))
    assert info.value.code == "not_in_purchase"
    assert state(engine) == before
    # the refusal is the answer for that id: a retry gets it again, another payload is a conflict
    with pytest.raises(RefusedError) as again:
        engine.process(refund("r1", "t1", items=(("ZZZ", 1),)))
    assert (again.value.code, again.value.reason) == (info.value.code, info.value.reason)
    with pytest.raises(ConflictError):
        engine.process(refund("r1", "t1", items=(("A", 1),)))
    assert state(engine) == before
    assert engine.process(refund("r2", "t1", items=(("A", 1),))).points < 0


def test_refund_by_another_member_is_refused():
    engine = make_engine()
    engine.process(purchase("t1"))
    engine.process(purchase("t2", member="m2"))
    with pytest.raises(RefusedError) as info:
        engine.process(refund("r1", "t1", member="m2"))
    assert info.value.code == "wrong_member"
    assert balance(engine).total == 105


def test_double_refund_same_id_is_a_duplicate_and_another_id_takes_nothing_more():
    engine = make_engine(BASE + BONUS)
    engine.process(purchase("t1"))
    first = engine.process(refund("r1", "t1"))
    again = engine.process(refund("r1", "t1"))
    assert again.duplicate and attrs.evolve(again, duplicate=False) == first
    other = engine.process(refund("r2", "t1"))
    assert other.points == 0 and other.entries == ()
    assert balance(engine).total == 0
    assert engine.member("m1", at=at(3)).lifetime.get("refunds") == Decimal("105.50")
    check_invariants(engine)


@pytest.mark.parametrize("lines", [True, False])
def test_a_refund_after_the_purchase_was_fully_returned_says_nothing_was_left(lines):
    engine = make_engine()
    engine.process(purchase("t1") if lines else purchase("t1", items=(), amount="100"))
    assert engine.process(refund("r1", "t1")).totals == {"points": Decimal("-105" if lines else "-100")}
    again = engine.process(refund("r2", "t1"))
    assert again.totals == {} and again.notes == ("nothing left to return: purchase 't1' was already returned in full",)


def test_early_refund_is_parked_then_applied_when_its_purchase_arrives():
    engine = make_engine(BASE + BONUS)
    parked = engine.process(refund("r1", "t1", items=(("B", 1),), day=2))
    assert parked.status == "parked" and parked.points == 0
    assert engine.store.ledger_sums() == {}
    assert engine.process(refund("r1", "t1", items=(("B", 1),), day=2)).status == "parked"  # retry: still parked
    result = engine.process(purchase("t1"))
    assert result.points == 155
    stored = engine.process(refund("r1", "t1", items=(("B", 1),), day=2))
    assert stored.duplicate and stored.status == "applied"
    assert stored.points == -45  # 105 * 45.5 / 105.5 = 45.28; the bonus stays (partial return)
    assert balance(engine).total == 110
    check_invariants(engine)


def test_early_full_refund_leaves_the_member_at_zero():
    engine = make_engine(BASE + BONUS)
    engine.process(refund("r1", "t1"))
    engine.process(purchase("t1"))
    assert balance(engine).total == 0
    assert engine.store.get_event("r1").status == "applied"
    check_invariants(engine)


def test_refund_without_original_is_an_input_error():
    engine = make_engine()
    with pytest.raises(InputError):
        engine.process({"id": "r1", "type": "refund", "member": "m1", "at": at(1).isoformat()})


def test_spend_statistics_drop_with_a_refund():
    rules = BASE + "tiers by spend over last 12 months { member from 0 silver from 100 }\n"
    engine = make_engine(rules)
    engine.process(purchase("t1"))
    view = engine.member("m1", at=at(3))
    assert view.tier.value == Decimal("105.50")
    engine.process(refund("r1", "t1", items=(("A", 1),)))
    assert engine.member("m1", at=at(3)).tier.value == Decimal("75.50")


@pytest.mark.parametrize(
    ("metric", "threshold", "before_return"),
    [("nights", 10, 12), ("purchases", 1, 1), ("spend", 100, Decimal("105.50"))],
)
def test_a_full_return_takes_the_purchase_out_of_tier_qualification(metric, threshold, before_return):
    rules = (
        BASE
        + "event purchase { nights: number }\n"
        + f"tiers by {metric} over last 12 months {{ member from 0  silver from {threshold}  review every 12 months }}\n"
    )
    engine = make_engine(rules)
    assert engine.process(purchase("t1", nights=12)).tier == "silver"
    assert engine.member("m1", at=at(2)).tier.value == before_return
    engine.process(refund("r1", "t1", items=(("A", 1),)))  # a partial return: still a purchase, still 12 nights
    if metric != "spend":
        assert engine.member("m1", at=at(2)).tier.value == before_return
    engine.process(refund("r2", "t1"))
    assert engine.member("m1", at=at(3)).tier.value == 0
    engine.process(refund("r3", "t1"))  # nothing left to return: nothing drops twice
    assert engine.member("m1", at=at(3)).tier.value == 0
    lifetime = engine.member("m1", at=at(3)).lifetime
    assert lifetime.get("purchases", 0) == lifetime.get("nights", 0) == lifetime.get("spend", 0) == 0
    assert engine.run_triggers(dt.date(2027, 5, 1)).downgrades == 1


# ------------------------------------------------------------------ fixed bonuses on refund


@pytest.mark.parametrize(
    ("policy", "partial_bonus", "full_bonus"),
    [
        ("", 0, -50),  # default: "refunds reverse bonuses on full return"
        ("refunds reverse bonuses on full return", 0, -50),
        ("refunds reverse bonuses", -14, -50),  # pro rata: 50 * 30 / 105.5 = 14.2
        ("refunds keep bonuses", 0, 0),
    ],
)
def test_fixed_bonus_refund_policy(policy, partial_bonus, full_bonus):
    engine = make_engine(BASE + BONUS, header=policy)
    engine.process(purchase("t1"))
    partial = engine.process(refund("r1", "t1", items=(("A", 1),)))
    assert sum(Decimal(e["amount"]) for e in partial.entries if e["rule"] == "bonus") == partial_bonus
    engine.process(refund("r2", "t1"))
    bonus = sum(e.amount for e in engine.store.ledger("m1") if e.rule == "bonus")
    assert bonus == 50 + full_bonus
    assert balance(engine).total == 50 + full_bonus
    check_invariants(engine)


COUPON_RULES = (
    BASE
    + "coupon BIG10 { discount 10%; valid 30 days }\n"
    + 'rule "big basket" on purchase when net_amount >= 100 { issue coupon BIG10 }\n'
)


def test_a_coupon_code_that_is_taken_gets_the_next_code(monkeypatch):
    """Codes are 40 bits of a hash: when one is taken, the store refuses it and the next salted code is used."""
    from loyalty_engine.service import apply

    real = apply.short_code
    monkeypatch.setattr(apply, "short_code", lambda *parts: "SAME" if len(parts) == 3 else real(*parts))
    engine = make_engine(COUPON_RULES)
    (first,) = engine.process(purchase("t1")).coupons
    (second,) = engine.process(purchase("t2")).coupons
    assert first == "BIG10-SAME" and second != first
    assert engine.store.get_coupon(first).event == "t1" and engine.store.get_coupon(second).event == "t2"
    assert engine.store.coupon_count("BIG10") == 2
    check_invariants(engine)


def test_coupons_issued_by_a_purchase_are_voided_on_full_return():
    engine = make_engine(COUPON_RULES)
    (code,) = engine.process(purchase("t1")).coupons
    engine.process(refund("r1", "t1", items=(("A", 1),)))
    assert engine.store.get_coupon(code).status == "issued"  # a partial return keeps it
    result = engine.process(refund("r2", "t1"))
    assert engine.store.get_coupon(code).status == "void"
    assert any(code in n for n in result.notes)
    with pytest.raises(RefusedError) as info:
        engine.redeem_coupon(code, purchase("t9", day=3))
    assert info.value.code == "coupon_void"


def test_coupons_are_kept_on_full_return_when_the_program_keeps_bonuses():
    engine = make_engine(COUPON_RULES, header="refunds keep bonuses")
    (code,) = engine.process(purchase("t1")).coupons
    engine.process(refund("r1", "t1"))
    assert engine.store.get_coupon(code).status == "issued"


def test_a_used_coupon_is_not_voided_by_a_return():
    engine = make_engine(COUPON_RULES)
    (code,) = engine.process(purchase("t1")).coupons
    engine.redeem_coupon(code, purchase("t2", day=2))
    engine.process(refund("r1", "t1", day=3))
    assert engine.store.get_coupon(code).status == "redeemed"


def test_budgets_are_given_back_by_a_full_return():
    rules = (
        "coupon C { discount 5; valid 30 days }\n"
        'rule "free coupon" on purchase { issue coupon C; budget 2 coupons }\n'
        'rule "budgeted" on purchase { award 1 point per 1 CNY of net_amount; budget 300 points }\n'
    )
    engine = make_engine(rules)
    assert len(engine.process(purchase("t1")).coupons) == 1
    engine.process(refund("r1", "t1"))
    assert engine.store.budgets(["rule:free coupon", "rule:budgeted"]) == {
        "rule:free coupon": Decimal(0),
        "rule:budgeted": Decimal(0),
    }
    second = engine.process(purchase("t2", day=3))
    third = engine.process(purchase("t3", day=4))
    assert (len(second.coupons), len(third.coupons)) == (1, 1)  # the voided coupon went back into the budget
    assert (second.points, third.points) == (105, 105)
    assert engine.process(purchase("t4", day=5)).points == 90  # 300 points in all
    assert engine.process(purchase("t5", day=6)).coupons == ()


def test_limit_is_freed_by_a_full_return():
    rules = BASE + 'rule "welcome" on purchase { award 100 points; limit once per member }\n'
    engine = make_engine(rules)
    assert engine.process(purchase("t1")).points == 205
    engine.process(refund("r1", "t1"))
    assert balance(engine).total == 0
    assert engine.process(purchase("t2", day=3)).points == 205


# ------------------------------------------------------------------ negative balances and debts


def test_refund_of_spent_points_records_a_debt_repaid_from_later_earnings():
    engine = make_engine()
    engine.process(purchase("t1"))  # 105
    engine.redeem_points("m1", 100, reference="red-1", at=at(2))
    result = engine.process(refund("r1", "t1", day=3))
    assert result.points == -5
    assert result.entries[0]["shortfall"] == "100"
    view = balance(engine)
    assert view.total == 0 and view.debt == 100
    check_invariants(engine)
    engine.process(purchase("t2", items=(("A", "food", 1, "60.00"),), day=4))  # earns 60, all repays debt
    view = balance(engine)
    assert view.total == 0 and view.debt == 40
    check_invariants(engine)
    engine.process(purchase("t3", items=(("A", "food", 1, "70.00"),), day=5))  # 70: 40 debt, 30 left
    view = balance(engine)
    assert view.total == 30 and view.debt == 0 and view.available == 30
    kinds = [e.kind for e in engine.store.ledger("m1")]
    assert kinds.count("debt") == 2
    check_invariants(engine)


def test_refund_with_may_go_negative_takes_the_balance_below_zero():
    engine = make_engine(header="points may go negative")
    engine.process(purchase("t1"))
    engine.redeem_points("m1", 100, reference="red-1", at=at(2))
    engine.process(refund("r1", "t1", day=3))
    view = balance(engine)
    assert view.total == -100 and view.debt == 0 and view.available == 0
    check_invariants(engine)
    engine.process(purchase("t2", items=(("A", "food", 1, "60.00"),), day=4))
    assert balance(engine).total == -40
    with pytest.raises(RefusedError):
        engine.redeem_points("m1", 1, reference="red-2", at=at(4))
    engine.process(purchase("t3", items=(("A", "food", 1, "70.00"),), day=5))
    view = balance(engine)
    assert view.total == 30 and view.available == 30
    check_invariants(engine)


def test_full_refund_returns_the_member_to_the_balance_without_it():
    engine = make_engine(BASE + BONUS)
    engine.process(purchase("t1"))
    engine.redeem_points("m1", 40, reference="red-1", at=at(2))
    engine.process(purchase("t2", items=(("A", "food", 3, "33.33"),), day=3))  # 99.99 -> 99
    engine.process(refund("r2", "t2", day=4))
    assert balance(engine).total == 155 - 40
    check_invariants(engine)


# ------------------------------------------------------------------ pending points


def test_pending_points_are_not_redeemable_until_released():
    engine = make_engine(header="points pending 14 days")
    engine.process(purchase("t1"))  # earned 1 May, released 15 May
    view = engine.member("m1", at=at(5)).balances["points"]
    assert view.total == 105 and view.available == 0
    assert view.pending == ((dt.date(2026, 5, 15), Decimal(105)),)
    before = state(engine)
    with pytest.raises(RefusedError) as info:
        engine.redeem_points("m1", 10, reference="red-1", at=at(14))
    assert info.value.code == "insufficient_balance"
    assert "pending" in info.value.reason
    assert state(engine) == before
    result = engine.redeem_points("m1", 10, reference="red-2", at=at(15))
    assert result.points == -10
    assert balance(engine, day=16).available == 95


def test_pending_points_can_be_taken_back_by_a_refund():
    engine = make_engine(header="points pending 14 days")
    engine.process(purchase("t1"))
    engine.process(refund("r1", "t1", day=3))
    view = engine.member("m1", at=at(4)).balances["points"]
    assert view.total == 0 and view.pending == () and view.debt == 0
    check_invariants(engine)


# ------------------------------------------------------------------ transfers


def test_transfer_is_refused_unless_the_program_allows_it():
    engine = make_engine()
    engine.process(purchase("t1"))
    engine.process(purchase("t2", member="m2"))
    with pytest.raises(RefusedError) as info:
        engine.transfer("m1", "m2", 10, reference="x1", at=at(2))
    assert info.value.code == "not_transferable"
    assert balance(engine).total == 105


def test_transfer_moves_points_once():
    engine = make_engine(header="points can be transferred")
    engine.process(purchase("t1"))
    engine.upsert_member({"id": "m2"}, at=at(1))
    result = engine.transfer("m1", "m2", 60, reference="x1", at=at(2))
    assert result.points == -60
    again = engine.transfer("m1", "m2", 60, reference="x1", at=at(2))
    assert again.duplicate
    assert balance(engine).total == 45
    assert balance(engine, member="m2").total == 60
    with pytest.raises(ConflictError):
        engine.transfer("m1", "m2", 61, reference="x1", at=at(2))
    check_invariants(engine)


def test_transfer_refusals_write_nothing():
    engine = make_engine(header="points can be transferred\n points pending 7 days")
    engine.process(purchase("t1"))
    engine.upsert_member({"id": "m2"}, at=at(1))
    before = state(engine)
    for n, (kwargs, code) in enumerate(
        [
            ({"to_member": "m2", "points": 10}, "insufficient_balance"),  # all pending
            ({"to_member": "m1", "points": 10}, "same_member"),
            ({"to_member": "nobody", "points": 10}, "unknown_member"),
        ]
    ):
        with pytest.raises(RefusedError) as info:
            engine.transfer("m1", reference=f"refused-{n}", at=at(3), **kwargs)
        assert info.value.code == code
    assert state(engine) == before
    result = engine.transfer("m1", "m2", 105, reference="x1", at=at(8))
    assert result.points == -105
    with pytest.raises(RefusedError):
        engine.transfer("m1", "m2", 1, reference="x2", at=at(9))
    check_invariants(engine)


@pytest.mark.parametrize(
    ("bad_refund", "code"),
    [
        (refund("r1", "t1", member="m2"), "wrong_member"),
        (refund("r1", "t1", items=(("ZZZ", 1),)), "not_in_purchase"),
    ],
)
def test_a_parked_refund_that_cannot_apply_does_not_block_its_purchase(bad_refund, code):
    engine = make_engine()
    assert engine.process(bad_refund).status == "parked"
    result = engine.process(purchase("t1"))  # must go through
    assert result.points == 105 and not result.duplicate
    assert balance(engine).total == 105
    assert engine.store.get_event("r1").status == "refused"
    with pytest.raises(RefusedError) as info:  # a retry of the refund gets its answer
        engine.process(bad_refund)
    assert info.value.code == code
    assert engine.process(purchase("t1")).duplicate
    assert balance(engine).total == 105
    check_invariants(engine)


def test_a_parked_refund_whose_original_is_not_a_purchase_is_refused_when_it_arrives():
    engine = make_engine()
    engine.process(refund("r1", "v1"))
    engine.process({"id": "v1", "type": "visit", "member": "m1", "at": at(1).isoformat()})
    with pytest.raises(RefusedError) as info:
        engine.process(refund("r1", "v1"))
    assert info.value.code == "not_a_purchase"


def test_a_misspelt_field_is_kept_but_the_result_says_no_rule_read_it():
    engine = make_engine()
    result = engine.process({**purchase("t1"), "chanel": "app", "loyalty_tier_code": "x"})
    assert result.notes == (
        "field 'chanel' is not one this program reads for purchase events (did you mean 'channel'?); no rule saw it",
    )
    assert engine.process(purchase("t2")).notes == ()


def test_an_amount_that_disagrees_with_the_lines_is_applied_with_a_note():
    engine = make_engine()
    result = engine.process({**purchase("t1"), "amount": "1.00"})  # the lines come to 105.50
    assert result.notes == (
        "the amount sent (1.00) differs from its lines' total (105.50): rules on amount and net_amount used "
        "the amount sent, rules on items used the lines",
    )
    assert engine.process({**purchase("t2"), "amount": "105.50"}).notes == ()


def test_a_refund_dated_before_its_purchase_is_applied_with_a_note():
    engine = make_engine()
    engine.process(purchase("t1", day=5))
    early = engine.process(refund("r1", "t1", day=3))
    assert early.points < 0
    assert any("before its purchase" in note and "till's clock" in note for note in early.notes), early.notes
    engine.process(purchase("t2", day=5))
    assert not any("before its purchase" in n for n in engine.process(refund("r2", "t2", day=6)).notes)
