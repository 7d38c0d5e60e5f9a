"""``loyalty demo``: a day at a coffee chain, evaluated by the bundled example program.

Builds a few members and a seeded stream of realistic purchases, evaluates
each one, and returns what a till would have shown. Nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from decimal import Decimal

from .model import Event, LineItem, Member, MemberContext

MENU = (
    ("LATTE", "coffee", "32.00"),
    ("AMERICANO", "coffee", "26.00"),
    ("FLAT_WHITE", "coffee", "34.00"),
    ("COLD_BREW", "coffee", "36.00"),
    ("CROISSANT", "bakery", "18.50"),
    ("BAGEL", "bakery", "16.00"),
    ("SANDWICH", "food", "42.00"),
    ("BEANS_1KG", "beans", "268.00"),
    ("MUG", "merchandise", "88.00"),
    ("GRINDER", "merchandise", "1299.00"),
)
NAMES = ("王芳", "李娜", "张伟", "Alice Chen", "刘洋", "Marco Rossi", "陈静", "Ana Silva")
TIERS = ("member", "member", "member", "silver", "silver", "gold")


def sample_members(rng: random.Random, today: dt.date, count: int = 8) -> list[MemberContext]:
    members = []
    for i in range(count):
        joined = today - dt.timedelta(days=rng.choice((5, 20, 200, 400, 900)))
        birthday = dt.date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28))
        if i == 0:
            birthday = birthday.replace(month=today.month, day=today.day)
        tier = TIERS[i % len(TIERS)]
        spend = Decimal(rng.choice((120, 850, 990, 2400, 4950, 7300)))
        members.append(
            MemberContext(
                Member(f"m-{100 + i}", NAMES[i % len(NAMES)], joined, birthday, tier),
                balances={"points": Decimal(rng.randint(0, 3000)), "stamps": Decimal(rng.randint(0, 9))},
                stats={"spend:last_12_months": spend, "visits:last_90_days": Decimal(rng.randint(0, 30))},
                scores={"churn_risk": Decimal(str(round(rng.random(), 2)))},
                last_purchase=dt.datetime.combine(today - dt.timedelta(days=rng.randint(1, 120)), dt.time(9), dt.UTC),
            )
        )
    return members


def sample_purchases(
    rng: random.Random, members: list[MemberContext], day: dt.date, tz: str, count: int = 24
) -> list[tuple[Event, MemberContext]]:
    zone = zoneinfo.ZoneInfo(tz)
    out = []
    for n in range(count):
        ctx = rng.choice(members)
        at = dt.datetime.combine(day, dt.time(7 + n * 13 // count, rng.randint(0, 59)), zone)
        lines = []
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            sku, category, price = rng.choice(MENU[:8] if rng.random() < 0.95 else MENU)
            lines.append(LineItem(sku, Decimal(rng.choice((1, 1, 1, 2, 3))), Decimal(price), category))
        out.append(
            (
                Event(
                    f"t-{day:%Y%m%d}-{n:03d}",
                    "purchase",
                    ctx.member.id,
                    at,
                    channel=rng.choice(("store", "store", "store", "app", "online")),
                    store=f"S{rng.randint(1, 10)}",
                    payment=rng.choice(("card", "wechat", "alipay", "cash")),
                    items=tuple(lines),
                ),
                ctx,
            )
        )
    return out
