"""A seeded sample history: members and their events, realistic enough to simulate a program on.

``generate_history(out_dir, members=..., months=..., seed=...)`` writes
``members.jsonl`` (one member a line, sorted by join day) and ``events.jsonl``
(purchases, refunds and points redemptions, sorted by time) in the wire format.
The same arguments always write the same bytes.

What makes it realistic:

- **members** join before the period (40%) or during it (60%), have a birthday,
  a home store and a rhythm: *frequent* (several visits a week), *occasional*
  (every week or two) or *rare* (about monthly); a share of them *lapse*: they
  stop buying on a day of the period and never come back;
- **seasonality**: fewer visits at the weekend for a commuter business, more on
  holidays (New Year, Spring Festival, Labour Day, Golden Week, Singles' Day,
  Christmas) and in the busy months;
- **baskets** mix categories (coffee most, then food, tea, merch: or the
  categories the given program talks about), with quantities and a few rare
  expensive items; channel (store, app, online), store and payment vary;
- **refunds** (about 3% of purchases, half of them partial) come 0-14 days after
  their purchase; **redemptions** happen when a member has collected enough;
  with a program, members now and then try one of its coupons at the till
  (``redeem_coupon`` by template: refused when they have none).

Memory is flat in the number of events: the generator walks the period day by
day and only keeps per-member profiles and the refunds still to come.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import random
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from attrs import define

from ..language import ast
from ..service.history import add_months, iter_nodes

DEFAULT_TIMEZONE = "Asia/Shanghai"

# category -> (sku, unit price, weight); the first categories are the most common
CATALOG: dict[str, list[tuple[str, str, int]]] = {
    "coffee": [
        ("LATTE", "32.00", 5),
        ("AMERICANO_M", "25.00", 4),
        ("CAPPUCCINO", "30.00", 3),
        ("FLAT_WHITE", "34.00", 2),
    ],
    "food": [("CROISSANT", "18.00", 4), ("SANDWICH", "38.00", 3), ("CHEESECAKE", "36.00", 2), ("SALAD", "45.00", 1)],
    "tea": [("MATCHA_LATTE", "28.00", 3), ("OOLONG", "22.00", 2)],
    "merch": [
        ("MUG", "89.00", 3),
        ("TUMBLER", "199.00", 2),
        ("BEANS_1KG", "268.00", 2),
        ("ESPRESSO_MACHINE", "1999.00", 1),
    ],
}
CATEGORY_WEIGHTS = {"coffee": 60, "food": 25, "tea": 10, "merch": 5}

SEGMENTS = (  # name, share of members, mean purchases per week
    ("frequent", 0.2, 3.5),
    ("occasional", 0.5, 0.9),
    ("rare", 0.3, 0.25),
)
LAPSE_SHARE = 0.25  # members who stop buying during the period
REFUND_SHARE = 0.03  # purchases that are (partly) refunded later
WEEKDAY = (1.1, 1.0, 1.05, 1.0, 1.15, 0.8, 0.7)  # Monday..Sunday
MONTH = (0.9, 0.8, 0.95, 1.0, 1.0, 1.0, 0.95, 0.95, 1.0, 1.05, 1.1, 1.25)  # January..December
HOLIDAYS = {  # (month, day) -> factor
    (1, 1): 1.5,
    (2, 14): 1.3,
    (5, 1): 1.4,
    (5, 2): 1.3,
    (5, 3): 1.2,
    **{(10, d): 1.4 for d in range(1, 8)},
    (11, 11): 1.6,
    (12, 24): 1.5,
    (12, 25): 1.6,
    (12, 31): 1.3,
}
SPRING_FESTIVAL = {2025: dt.date(2025, 1, 29), 2026: dt.date(2026, 2, 17), 2027: dt.date(2027, 2, 6)}
SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = ["芳", "伟", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "军", "杰"]
LATIN = ["Alice Chen", "Omar Haddad", "Emma Wong", "Liam O'Brien", "Sofia Rossi", "Kenji Sato", "Maria Garcia"]
CHANNELS = (("store", 70), ("app", 20), ("online", 10))
PAYMENTS = (("wechat", 45), ("alipay", 30), ("card", 20), ("cash", 5))
HOUR_WEIGHTS = (0, 0, 0, 0, 0, 0, 0, 3, 9, 8, 5, 4, 6, 5, 4, 4, 3, 3, 3, 2, 1, 1, 0, 0)


@define
class Profile:
    id: str
    joined: dt.date
    segment: str
    rate: float  # purchase probability on an ordinary day
    lapses: dt.date | None
    store: str
    channel_bias: str
    earned: int = 0  # a rough points estimate, so redemptions are mostly affordable


def day_factor(day: dt.date) -> float:
    """How busy ``day`` is compared with an ordinary day: weekday x month x holiday."""
    factor = WEEKDAY[day.weekday()] * MONTH[day.month - 1] * HOLIDAYS.get((day.month, day.day), 1.0)
    festival = SPRING_FESTIVAL.get(day.year)
    if festival is not None and 0 <= (day - festival).days < 3:
        factor *= 1.5
    return factor


def program_catalog(program) -> dict[str, list[tuple[str, str, int]]]:
    """The categories a program talks about (rules and coupons), with SKUs: the default catalog's or made up."""
    names: list[str] = []
    skus: set[str] = set()
    checked = program.checked
    for root in [*checked.rules, *checked.triggers]:
        for node in iter_nodes(root):
            if (
                isinstance(node, ast.Binary)
                and isinstance(node.left, ast.Path)
                and node.left.dotted.endswith("category")
            ):
                values = node.right.items if isinstance(node.right, ast.ListExpr) else (node.right,)
                names += [v.value for v in values if isinstance(v, ast.Literal) and isinstance(v.value, str)]
    for template in checked.coupons.values():
        names += list(template.categories)
        if template.discount_kind == "free_item":
            skus.add(str(template.discount_value))
    names = list(dict.fromkeys(names))
    if not names:
        return CATALOG
    catalog = {}
    for i, name in enumerate(names):
        if name in CATALOG:
            catalog[name] = CATALOG[name]
        else:
            base = 20 + 15 * (i % 5)
            catalog[name] = [(f"{name.upper()}-{k + 1}", f"{base * (k + 1)}.00", 3 - k) for k in range(3)]
    known = {sku for lines in catalog.values() for sku, _, _ in lines}
    for sku in sorted(skus - known):  # free items of coupons, so those coupons can be used
        for lines in CATALOG.values():
            for line in lines:
                if line[0] == sku:
                    first = next(iter(catalog))
                    catalog[first] = [*catalog[first], line]
    return catalog


class Generator:
    def __init__(self, members: int, months: int, seed: int, start: dt.date, timezone: str, catalog, templates=()):
        self.rng = random.Random(seed)
        self.start = start
        self.end = add_months(start, months)  # exclusive
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.catalog = catalog
        self.categories = list(catalog)
        self.category_weights = [CATEGORY_WEIGHTS.get(c, 10) for c in self.categories]
        self.profiles = [self._profile(i) for i in range(members)]
        self.profiles.sort(key=lambda p: (p.joined, p.id))
        self.counter = {"t": 0, "r": 0, "x": 0, "c": 0}
        self.templates = sorted(templates)

    def _choice(self, pairs):
        return self.rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]

    def _profile(self, i: int) -> Profile:
        rng = self.rng
        period = (self.end - self.start).days
        if rng.random() < 0.4:
            joined = self.start - dt.timedelta(days=rng.randrange(1, 3 * 365))
        else:
            joined = self.start + dt.timedelta(days=rng.randrange(period))
        segment, _, per_week = rng.choices(SEGMENTS, [s[1] for s in SEGMENTS])[0]
        lapses = None
        if rng.random() < LAPSE_SHARE:
            first = max(joined, self.start)
            lapses = first + dt.timedelta(days=rng.randrange(max(1, (self.end - first).days)))
        return Profile(
            f"m-{i + 1:06d}",
            joined,
            segment,
            min(0.95, per_week / 7 * rng.uniform(0.7, 1.3)),
            lapses,
            f"S{rng.randrange(1, 11)}",
            self._choice(CHANNELS),
        )

    # -------------------------------------------------------------- members

    def members(self) -> Iterator[dict]:
        rng = random.Random(self.rng.random())
        for p in self.profiles:
            if rng.random() < 0.6:
                name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.5 else "")
            else:
                name = rng.choice(LATIN)
            birthday = dt.date(rng.randrange(1955, 2006), rng.randrange(1, 13), rng.randrange(1, 29))
            number = p.id[2:]
            yield {
                "id": p.id,
                "name": name,
                "joined": p.joined.isoformat(),
                "birthday": birthday.isoformat(),
                "email": f"{p.id}@example.com",
                "phone": f"+86 139 {number[:2]}00 {number[2:]}",
                "attributes": {"segment": p.segment},
            }

    # -------------------------------------------------------------- events, day by day

    def events(self) -> Iterator[dict]:
        pending: list[tuple] = []  # refunds to come: (time, seq, event)
        seq = 0
        day = self.start
        while day < self.end:
            factor = day_factor(day)
            todays = []
            for p in self.profiles:
                if p.joined > day or (p.lapses is not None and day >= p.lapses):
                    continue
                if self.rng.random() >= p.rate * factor:
                    continue
                purchase = self._purchase(p, day)
                todays.append(purchase)
                if self.rng.random() < REFUND_SHARE:
                    refund = self._refund(purchase)
                    if refund["at"] < self.end_time:
                        seq += 1
                        heapq.heappush(pending, (refund["at"], seq, refund))
                if p.earned >= 600 and self.rng.random() < 0.08:
                    todays.append(self._redeem(p, purchase))
                if self.templates and self.rng.random() < 0.03:  # tries a coupon it may or may not have
                    todays.append(self._use_coupon(p, purchase))
            until = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), self.tz)
            while pending and pending[0][0] < until:
                todays.append(heapq.heappop(pending)[2])
            todays.sort(key=lambda e: (e["at"], e["id"]))
            for event in todays:
                yield {**event, "at": event["at"].isoformat()}
            day += dt.timedelta(days=1)

    @property
    def end_time(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time(0), self.tz)

    def _next(self, prefix: str) -> str:
        self.counter[prefix] += 1
        return f"{prefix}-{self.counter[prefix]:07d}"

    def _purchase(self, p: Profile, day: dt.date) -> dict:
        rng = self.rng
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        at = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), self.tz)
        lines: dict[str, dict] = {}
        for _ in range(rng.choices((1, 2, 3, 4), (45, 35, 15, 5))[0]):
            category = rng.choices(self.categories, self.category_weights)[0]
            choices = self.catalog[category]
            sku, price, _ = rng.choices(choices, [c[2] for c in choices])[0]
            if sku in lines:
                lines[sku]["quantity"] += 1
                continue
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            lines[sku] = {"sku": sku, "category": category, "quantity": quantity, "unit_price": price}
        items = list(lines.values())
        channel = p.channel_bias if rng.random() < 0.8 else self._choice(CHANNELS)
        event = {"id": self._next("t"), "type": "purchase", "member": p.id, "at": at, "channel": channel}
        if channel == "store":
            event["store"] = p.store if rng.random() < 0.85 else f"S{rng.randrange(1, 11)}"
        event["payment"] = self._choice(PAYMENTS)
        event["items"] = items
        p.earned += int(sum(Decimal(i["unit_price"]) * i["quantity"] for i in items))
        return event

    def _refund(self, purchase: dict) -> dict:
        rng = self.rng
        at = purchase["at"] + dt.timedelta(days=rng.randrange(0, 15), hours=rng.randrange(1, 6))
        refund = {
            "id": self._next("r"),
            "type": "refund",
            "original": purchase["id"],
            "member": purchase["member"],
            "at": at,
        }
        items = purchase["items"]
        if len(items) > 1 or items[0]["quantity"] > 1:
            if rng.random() < 0.5:  # a partial return: one unit of one line
                refund["items"] = [{"sku": rng.choice(items)["sku"], "quantity": 1}]
        return refund

    def _use_coupon(self, p: Profile, purchase: dict) -> dict:
        at = purchase["at"] + dt.timedelta(seconds=30)
        template = self.rng.choice(self.templates)
        return {
            "id": self._next("c"),
            "type": "redeem_coupon",
            "member": p.id,
            "template": template,
            "purchase": purchase["id"],
            "at": at,
        }

    def _redeem(self, p: Profile, purchase: dict) -> dict:
        points = self.rng.choice((100, 200, 300, 500))
        p.earned -= points
        at = purchase["at"] + dt.timedelta(minutes=1)
        return {"id": self._next("x"), "type": "redeem", "member": p.id, "points": points, "at": at}


def generate_history(
    out_dir: str | Path,
    *,
    members: int,
    months: int,
    seed: int,
    start: dt.date | None = None,
    program=None,
) -> dict:
    """Write ``members.jsonl`` and ``events.jsonl`` into ``out_dir``; returns counts per event type."""
    if members < 1 or months < 1:
        raise ValueError("members and months must be at least 1")
    start = start or dt.date(2026, 1, 1)
    timezone = program.timezone if program is not None else DEFAULT_TIMEZONE
    catalog = program_catalog(program) if program is not None else CATALOG
    templates = list(program.checked.coupons) if program is not None else []
    gen = Generator(members, months, seed, start, timezone, catalog, templates)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {"members": 0}
    with open(out / "members.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for member in gen.members():
            fh.write(json.dumps(member, ensure_ascii=False) + "\n")
            counts["members"] += 1
    with open(out / "events.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for event in gen.events():
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            counts[event["type"]] = counts.get(event["type"], 0) + 1
    return counts
