"""The JSON wire format: Decimal amounts, aware times, errors that name the field."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine import wire
from loyalty_engine.errors import InputError
from loyalty_engine.wire import structure_context, structure_event

GOOD = {
    "id": "t-1001",
    "type": "purchase",
    "member": "m-42",
    "at": "2026-05-03T10:15:00+08:00",
    "channel": "store",
    "items": [{"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": "32.00"}],
}


def test_amounts_are_decimal_and_derived_from_items():
    event = structure_event(GOOD)
    assert event.items[0].amount == Decimal("64.00")
    assert event.amount == Decimal("64.00") and event.net_amount == Decimal("64.00")
    assert event.at.utcoffset() == dt.timedelta(hours=8)


def test_float_amounts_do_not_pick_up_binary_noise():
    data = dict(GOOD, items=[{"sku": "A", "quantity": 3, "unit_price": 0.1}])
    assert structure_event(data).amount == Decimal("0.3")


@pytest.mark.parametrize(
    "change, path, message",
    [
        (
            {"items": [{"sku": "A"}, {"sku": "B"}, {"sku": "C", "unit_price": "abc"}]},
            "items[2].unit_price",
            "'abc' is not a decimal amount",
        ),
        ({"at": "2026-05-03T10:15:00"}, "at", "has no timezone offset"),
        ({"at": "yesterday"}, "at", "is not an ISO 8601 date and time"),
        ({"items": [{"quantity": 1}]}, "items[0].sku", "is required"),
        ({"items": [{"sku": "A", "quantity": -1}]}, "items[0]", "'quantity' must be >= 0"),
        (
            {"items": [{"sku": "A", "unit_price": "1e30"}]},
            "items[0]",
            "'unit_price' must be below 1,000,000,000,000,000",
        ),
        ({"items": [{"sku": "A", "quantity": 10**20}]}, "items[0]", "'quantity' must be below 1,000,000,000"),
        ({"amount": "9" * 40, "items": []}, "", "'amount' must be below"),
        ({"discount": "100"}, "", "'discount' (100) is more than the amount (64.00)"),
        ({"discount": "-5"}, "", "'discount' must be >= 0 (got -5)"),
        ({"member": ""}, "", "'member' must not be empty"),
    ],
)
def test_bad_input_names_the_field(change, path, message):
    with pytest.raises(InputError) as info:
        structure_event({**GOOD, **change})
    text = str(info.value)
    assert f"{path}" in text and message in text, text


def test_missing_id_and_type_both_reported():
    data = {k: v for k, v in GOOD.items() if k not in ("id", "type")}
    with pytest.raises(InputError) as info:
        structure_event(data)
    paths = [p for p, _ in info.value.problems]
    assert "id" in paths and "type" in paths


def test_custom_fields_typed_by_the_program():
    data = {**GOOD, "type": "review", "rating": "4"}
    event = structure_event(data, {"review": {"rating": "number"}})
    assert event.attributes["rating"] == Decimal(4)
    with pytest.raises(InputError, match="rating: 'great' is not a decimal amount"):
        structure_event({**data, "rating": "great"}, {"review": {"rating": "number"}})


def test_member_with_context():
    ctx = structure_context(
        {
            "id": "m-42",
            "name": "王芳",
            "joined": "2025-01-10",
            "birthday": "1990-05-20",
            "tier": "silver",
            "context": {
                "stats": {"spend:last_12_months": "1200.50"},
                "history": {"rule:B": ["2026-01-02T10:00:00+08:00"]},
            },
        }
    )
    assert ctx.member.name == "王芳" and ctx.stats["spend:last_12_months"] == Decimal("1200.50")
    with pytest.raises(InputError, match="birthday: '1990-13-01' is not a date"):
        structure_context({"id": "m", "birthday": "1990-13-01"})


# ------------------------------------------------------------------ the fast path for well-formed events

_amounts = st.one_of(
    st.integers(0, 10_000),
    st.decimals(0, 10_000, places=2).map(str),
    st.floats(0, 10_000, allow_nan=False).map(lambda f: round(f, 2)),
)
_items = st.lists(
    st.fixed_dictionaries(
        {"sku": st.text(min_size=1, max_size=5)},
        optional={
            "quantity": st.integers(1, 5),
            "unit_price": _amounts,
            "category": st.sampled_from(["coffee", "tea", "咖啡"]),
            "discount": st.integers(0, 3),
        },
    ),
    max_size=4,
)
_events = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8),
        "type": st.sampled_from(["purchase", "visit", "refund"]),
        "member": st.sampled_from(["m-1", "m-2"]),
        "at": st.sampled_from(["2026-05-03T10:15:00+08:00", "2026-05-03T02:15:00Z", "2026-05-03T10:15:00"]),
    },
    optional={
        "items": _items,
        "channel": st.sampled_from(["store", "app"]),
        "discount": _amounts,
        "nights": st.just(2),
    },
)


def _full_path(data):
    fast, wire._fast_event = wire._fast_event, lambda data: None
    try:
        return structure_event(dict(data))
    except InputError as exc:
        return ("error", str(exc))
    finally:
        wire._fast_event = fast


@settings(max_examples=300, deadline=None)
@given(_events)
def test_the_fast_path_builds_exactly_what_the_full_path_builds(data):
    fast = wire._fast_event(dict(data))
    if fast is not None:  # it only takes what it can build exactly; the rest goes the full path
        assert fast == _full_path(data)
        event, payload = wire.event_and_payload(dict(data))
        assert event == fast
        assert payload == wire.canonical_json(fast)  # the idempotency payload built alongside is the canonical one
    try:
        result = structure_event(dict(data))
    except InputError as exc:
        result = ("error", str(exc))
    assert result == _full_path(data)
