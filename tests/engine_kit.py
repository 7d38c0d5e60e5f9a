"""Shared helpers of the engine tests: a small program, times in Shanghai, purchases, database dumps."""

import datetime as dt

from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
HEADER = 'program "T" {{ currency CNY timezone "Asia/Shanghai" rounding floor {extra} }}\n'
BASE = 'rule "base" on purchase { award 1 point per 1 CNY of net_amount }\n'


def make_engine(rules: str = BASE, header: str = "", path=":memory:") -> Engine:
    return Engine.open(load_program("t.loy", text=HEADER.format(extra=header) + rules), path)


def at(day: int, hour: int = 10, month: int = 5) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=SHANGHAI)


def purchase(
    event_id, member="m1", items=(("A", "food", 2, "30.00"), ("B", "drink", 1, "45.50")), day=1, month=5, **kw
):
    return {
        "id": event_id,
        "type": "purchase",
        "member": member,
        "at": at(day, month=month).isoformat(),
        "items": [{"sku": s, "category": c, "quantity": q, "unit_price": u} for s, c, q, u in items],
        **kw,
    }


def dump(engine) -> list[str]:
    return list(engine.store.conn.iterdump())


def state(engine) -> list[str]:
    """Everything but the idempotency records: what a refusal must leave as it was."""
    return [line for line in engine.store.conn.iterdump() if not line.startswith('INSERT INTO "events"')]
