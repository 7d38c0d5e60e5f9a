import datetime as dt
from decimal import Decimal

import pytest

from loyalty_engine.model import Event, LineItem, Member, MemberContext

HEADER = 'program "Test" { currency CNY  timezone "Asia/Shanghai" }\n'
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def purchase(*lines, at=None, channel="store", store="S1", event_id="t-1", **kw):
    items = tuple(
        LineItem(sku=sku, category=cat, quantity=Decimal(str(qty)), unit_price=Decimal(price))
        for sku, cat, qty, price in lines
    )
    return Event(
        event_id,
        "purchase",
        "m-1",
        at or dt.datetime(2026, 5, 5, 10, 0, tzinfo=SHANGHAI),
        channel=channel,
        store=store,
        items=items,
        **kw,
    )


def member(tier=None, **kw):
    return MemberContext(Member("m-1", "王芳", dt.date(2025, 1, 10), dt.date(1990, 5, 20), tier), **kw)


@pytest.fixture
def header():
    return HEADER
