"""The bundled sample history behind ``loyalty demo``: three months at a coffee chain.

``sample_history(seed)`` writes, deterministically, the lines of
``dsl/examples/history/coffee_chain.jsonl``: members joining, purchases with
realistic baskets, a few returns, points redemptions, free coffees used at the
till, and the daily trigger run. ``tests/test_demo.py`` checks that the
bundled file is exactly what the generator writes, so they cannot drift.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zoneinfo

MENU = (
    ("LATTE_M", "coffee", "32.00"),
    ("AMERICANO_M", "coffee", "28.00"),
    ("FLAT_WHITE", "coffee", "34.00"),
    ("COLD_BREW", "coffee", "36.00"),
    ("GREEN_TEA", "tea", "24.00"),
    ("CROISSANT", "bakery", "18.50"),
    ("BAGEL", "bakery", "16.00"),
    ("SANDWICH", "food", "42.00"),
    ("BEANS_1KG", "beans", "268.00"),
    ("MUG", "merchandise", "88.00"),
)
NAMES = (
    "王芳", "李娜", "张伟", "Alice Chen", "刘洋", "Marco Rossi", "陈静", "Ana Silva", "杨磊", "Tom Baker",
    "赵敏", "Li Wei", "黄丽", "Sara Kim", "周杰", "Omar Haddad", "吴婷", "Emma Wong", "徐强", "孙悦",
)  # fmt: skip
TZ = "Asia/Shanghai"
START = dt.date(2026, 3, 1)
DAYS = 92


def _at(day: dt.date, hour: int, minute: int) -> str:
    return dt.datetime.combine(day, dt.time(hour, minute), zoneinfo.ZoneInfo(TZ)).isoformat()


def sample_history(seed: int = 7, members: int = 24) -> list[dict]:
    """The demo's history lines, in order (members, purchases, returns, redemptions, triggers)."""
    rng = random.Random(seed)
    lines: list[dict] = []
    people = []
    for i in range(members):
        member_id = f"m-{1001 + i}"
        joined = START + dt.timedelta(days=rng.randint(0, 60))
        birthday = dt.date(rng.randint(1965, 2004), rng.randint(1, 12), rng.randint(1, 28))
        habit = rng.choice((3, 5, 7, 10, 14, 21))  # days between visits
        people.append((member_id, joined, habit, rng.random() < 0.2))  # a fifth lapse after a while
        lines.append(
            {
                "type": "member",
                "id": member_id,
                "name": NAMES[i % len(NAMES)],
                "joined": joined.isoformat(),
                "birthday": birthday.isoformat(),
                "email": f"{member_id}@example.com",
                "phone": f"+86 138 0000 {1001 + i}",
                "at": _at(joined, 8, 0),
            }
        )
    lines.sort(key=lambda line: line["at"])
    purchases: dict[str, list[dict]] = {}
    serial = 0
    cards: dict[str, int] = {}  # coffees on each member's punch card, to use the free coffee they earn
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        today = []
        for member_id, joined, habit, lapses in people:
            if day < joined or (lapses and day > joined + dt.timedelta(days=30)):
                continue
            if rng.random() > 1 / habit:
                continue
            serial += 1
            basket = []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                sku, category, price = rng.choice(MENU[:8] if rng.random() < 0.93 else MENU)
                basket.append(
                    {"sku": sku, "category": category, "quantity": rng.choice((1, 1, 1, 2)), "unit_price": price}
                )
            event = {
                "id": f"t-{day:%m%d}-{serial:04d}",
                "type": "purchase",
                "member": member_id,
                "at": _at(day, rng.randint(7, 19), rng.randint(0, 59)),
                "channel": rng.choice(("store", "store", "store", "app")),
                "store": f"SH-{rng.randint(1, 6):02d}",
                "items": basket,
            }
            today.append(event)
            purchases.setdefault(member_id, []).append(event)
        today.sort(key=lambda e: e["at"])
        for event in today:
            lines.append(event)
            roll = rng.random()
            full = cards.get(event["member"], 0) >= 9
            if full:
                event["items"].append(
                    {"sku": "AMERICANO_M", "category": "coffee", "quantity": 1, "unit_price": "28.00"}
                )
            cards[event["member"]] = cards.get(event["member"], 0) + sum(
                i["quantity"] for i in event["items"] if i["category"] == "coffee"
            )
            if roll < 0.03:  # a return, sometimes of one line only
                refund = {
                    "id": f"r-{event['id'][2:]}",
                    "type": "refund",
                    "original": event["id"],
                    "member": event["member"],
                    "at": event["at"][:11] + "20:30:00+08:00",
                }
                if len(event["items"]) > 1 and rng.random() < 0.5:
                    refund["items"] = [{"sku": event["items"][0]["sku"], "quantity": 1}]
                lines.append(refund)
            elif full:  # the punch card was full: the free coffee is used next time
                cards[event["member"]] -= 9
                lines.append(
                    {
                        "id": f"c-{event['id'][2:]}",
                        "type": "redeem_coupon",
                        "member": event["member"],
                        "template": "FREE_COFFEE",
                        "purchase": event["id"],
                    }
                )
            elif roll < 0.10 and len(purchases[event["member"]]) > 6:
                lines.append(
                    {
                        "id": f"x-{event['id'][2:]}",
                        "type": "redeem",
                        "member": event["member"],
                        "points": 100,
                        "at": event["at"][:11] + "21:00:00+08:00",
                    }
                )
        lines.append({"type": "triggers", "at": day.isoformat()})
    return lines


def write_history(path, seed: int = 7) -> int:
    lines = sample_history(seed)
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(lines)
