"""A seeded, replayable corpus of hostile rule files, and the property every one of them must keep.

Case ``i`` of seed ``S`` is always the same text (``case(S, i)``), whatever ran before it, so
any failure is replayed with ``python benchmarks/fuzz_rules.py --seed S --case i``.

Two kinds of cases:

* *generated*: programs built from every construct of docs/language.md, mostly well formed,
  with deliberately wrong variants (unknown names, wrong types and units, duplicates, bad
  dates, out-of-range and huge numbers, unicode, CRLF, tabs, BOM, NUL, lone surrogates,
  very long names and texts);
* *mutated*: the example programs (dsl/examples, benchmarks/*.loy) and generated programs
  with token- and character-level damage (deleted, doubled, swapped tokens, keywords in the
  wrong place, truncation, unbalanced braces, quotes and parentheses).

The property (``check_case``): ``check_program`` raises nothing; every diagnostic has a line
and column inside the file and renders as ``name:line:col: ...`` with the source line and a
caret; checking takes under ``TIME_LIMIT`` seconds; a file that checks clean also loads and
evaluates a small purchase raising at most a documented error; and, under an audit hook, no
``exec``/``compile`` sees the user's text (every case carries ``MARKER`` in names and texts),
and nothing is imported, opened or spawned while checking or evaluating.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

ROOT = Path(__file__).resolve().parent.parent
MARKER = "zqMRKq"
TIME_LIMIT = 1.0
FILE_NAME = "fuzz.loy"


# ------------------------------------------------------------------ pools


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


CURRENCIES = ["CNY", "EUR", "USD", "JPY", "GBP"]
BAD_CURRENCIES = ["cny", "EURO", "X", "US$", "元", "points"]
TIMEZONES = ["Asia/Shanghai", "Europe/Paris", "America/New_York", "UTC", "Asia/Tokyo", "Australia/Lord_Howe"]
BAD_TIMEZONES = ["Mars/Base", "", "Europe/Pariss", "asia/shanghai", "../../etc/passwd", "/etc/localtime", "UTC+8"]
ROUNDINGS = ["floor", "ceiling", "half_up", "half_even", "half_down", "down", "up"]
BAD_ROUNDINGS = ["halfup", "round", "HALF_UP", "nearest"]
STATS = ["spend", "visits", "purchases", "nights", "refunds", "points_earned", "points_redeemed"]
BAD_STATS = ["spent", "visit", "amount", "points"]
UNITS = ["day", "days", "week", "weeks", "month", "months", "year", "years"]
BAD_UNITS = ["hours", "minutes", "fortnight", "dayz"]
EVENTS = ["purchase", "purchase", "purchase", "refund", "signup", "visit"]
BAD_EVENTS = ["purchse", "order", "Purchase", "refunds"]
CHANNELS = ["sms", "email", "push", "webhook", "console"]
BAD_CHANNELS = ["fax", "smss", "pigeon"]
FUNCS = {
    "weekday": 1,
    "month": 1,
    "day": 1,
    "year": 1,
    "hour": 1,
    "days_since": 1,
    "days_until": 1,
    "between": 3,
    "is_birthday": 1,
    "min": 2,
    "max": 3,
    "round": 1,
    "floor": 1,
    "ceil": 1,
    "abs": 1,
    "lower": 1,
    "upper": 1,
    "contains": 2,
    "starts_with": 2,
    "expiring_within": 1,
}
BAD_FUNCS = ["weekdays", "now", "len", "eval", "__import__", "exec", "open", "print"]
EVENT_FIELDS = ["net_amount", "amount", "discount", "channel", "store", "id", "type", "member", "at", "today", "now"]
MEMBER_FIELDS = [
    "id",
    "name",
    "tier",
    "joined",
    "birthday",
    "email",
    "phone",
    "last_purchase",
    "first_purchase",
    "tier_since",
    "tier_expires",
    "points",
]
ITEM_FIELDS = ["category", "sku", "quantity", "unit_price", "amount", "brand", "name"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SCORES = ["rfm_score", "rfm_segment", "churn_risk", "clv", "churn_probability", "no_such_score"]
TYPES = ["text", "number", "money", "boolean", "bool", "amount", "date", "datetime"]
KEYWORDS = _words(
    "program include tiers rule campaign group coupon trigger event member fields on when award per of as up to "
    "multiply by cap at issue send with subject set tier reward limit once times budget priority valid from until "
    "pick best first discount free item min spend only categories daily weekly monthly day and or not any all "
    "items lines where in count sum over last calendar lifetime true false none expire after earning never may go "
    "negative can be transferred refunds keep reverse bonuses pending balance money currency timezone rounding "
    "review every grace earn total"
)
PUNCT = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    ":",
    ";",
    '"',
    "==",
    "!=",
    "<=",
    ">=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
]
WEIRD = [
    "\x00",
    "\ufeff",
    "\t",
    "\r",
    "\r\n",
    "\u2028",
    "\u00a0",
    "\ud800",
    "\udfff",
    "“",
    "”",
    "'",
    "=",
    "&&",
    "||",
    "!",
    "é",
    "中",
    "🎉",
    "\x1b[31m",
    "\\",
    "{{",
    "}}",
    "#",
]


def _huge(rng: Random) -> str:
    return rng.choice(["1e400", "9" * 5000, "1" + "0" * 4400, "9" * 30, "0." + "0" * 3000 + "1", "1" * 20 + ".5"])


# ------------------------------------------------------------------ generated programs


class Gen:
    """One random program. ``wrong`` is the chance of a deliberately wrong choice at each step."""

    def __init__(self, rng: Random, wrong: float):
        self.rng = rng
        self.wrong = wrong
        self.balances = ["points"]
        self.money_balances: list[str] = []
        self.coupons: list[str] = []
        self.tiers: list[str] = []
        self.groups: list[str] = []
        self.events = ["purchase", "refund", "signup", "visit"]
        self.fields: list[str] = []
        self.member_fields: list[str] = []

    # ---------------------------------------------------------- small pieces

    def bad(self) -> bool:
        return self.rng.random() < self.wrong

    def pick(self, good, bad):
        return self.rng.choice(bad) if self.bad() else self.rng.choice(good)

    def name(self, prefix: str = "n") -> str:
        r = self.rng.random()
        if self.bad():
            return self.rng.choice(
                [
                    "1abc",
                    "rule",
                    "award",
                    "x" * self.rng.choice([300, 5000]),
                    MARKER + "é中",
                    "a-b",
                    "__class__",
                    "_",
                    "None",
                    "def",
                    "import",
                ]
            )
        if r < 0.3:
            return f"{prefix}_{MARKER}{self.rng.randint(0, 99)}"
        if r < 0.4:
            return self.rng.choice(["会员", "金卡", "café", "Ünïcode"]) + str(self.rng.randint(0, 9))
        return f"{prefix}{self.rng.randint(0, 999)}"

    def text(self, placeholders: bool = False) -> str:
        rng = self.rng
        parts = [rng.choice(["hello", "亲爱的", "Grüße", "", MARKER, f"{MARKER} __import__('os').system('id')"])]
        if placeholders:
            for _ in range(rng.randint(0, 3)):
                if self.bad():
                    parts.append(
                        rng.choice(
                            [
                                "{",
                                "{(}",
                                "{unknown_" + MARKER + "}",
                                "{member.nope}",
                                "{net_amount +}",
                                "{" + "(" * 70 + "1" + ")" * 70 + "}",
                                "{{",
                                "}",
                                "{}",
                                "{__import__('os')}",
                                "{" + MARKER + "}",
                            ]
                        )
                    )
                else:
                    parts.append("{" + self.expr(depth=2, ctx="trigger" if rng.random() < 0.2 else "rule") + "}")
        if self.bad():
            parts.append(rng.choice(['\\"', "\\n", "\\t", "\\\\", "x" * 20_000, "\\u1234", "\t", "é" * 50]))
        body = re.sub(r'(?<!\\)"', r'\\"', " ".join(parts))
        return '"' + body + '"'

    def int_(self, lo: int = 0, hi: int = 1000) -> str:
        if self.bad():
            return self.rng.choice(["0", "-1", "-5", "1.5", _huge(self.rng), "99999999999", "1_000"])
        return str(self.rng.randint(lo, hi))

    def number(self) -> str:
        if self.bad():
            return self.rng.choice(["0", _huge(self.rng), "0.0000001", "1.", ".5", "1,5"])
        return self.rng.choice(
            [str(self.rng.randint(0, 500)), f"{self.rng.randint(0, 99)}.{self.rng.randint(0, 99):02d}"]
        )

    def date(self) -> str:
        if self.bad():
            return self.rng.choice(
                [
                    "2026-02-30",
                    "2026-13-01",
                    "0000-01-01",
                    "9999-12-31",
                    "2026-1-1",
                    "2026/01/01",
                    "20260101",
                    "2026-02-29",
                ]
            )
        return f"{self.rng.randint(2020, 2030)}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"

    def unit(self) -> str:
        return self.pick(UNITS, BAD_UNITS)

    def window(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return f"{'last ' if self.rng.random() < 0.7 else ''}{self.int_(1, 36)} {self.unit()}"
        if r < 0.8:
            return "calendar " + self.pick(["year", "month", "week"], ["day", "decade"])
        return "lifetime"

    def balance(self) -> str:
        if self.bad():
            return self.rng.choice(["pints", "coupons", "money", "nope_" + MARKER, "point"])
        b = self.rng.choice(self.balances + self.money_balances)
        if b == "points" and self.rng.random() < 0.3:
            return "point"
        return b

    # ---------------------------------------------------------- expressions

    def atom(self, ctx: str, item: bool) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return self.number()
        if r < 0.2:
            return f"{rng.randint(0, 100)}%"
        if r < 0.27:
            return self.text()
        if r < 0.31:
            return self.date()
        if r < 0.34:
            return rng.choice(["true", "false", "none"])
        if r < 0.55:
            if item and rng.random() < 0.6:
                return (
                    self.pick(ITEM_FIELDS, ["colour", "qty"])
                    if rng.random() < 0.5
                    else "item." + rng.choice(ITEM_FIELDS)
                )
            if rng.random() < 0.4:
                return "member." + self.pick(MEMBER_FIELDS + self.member_fields + self.balances, ["nope", "tierr"])
            if ctx == "rule" or self.bad():
                f = self.pick(EVENT_FIELDS + self.fields, ["net_amout", "tier", "event.nope", "item.category"])
                return ("event." + f) if rng.random() < 0.2 and "." not in f else f
            return rng.choice(["today", "now"] + WEEKDAYS)
        if r < 0.68:
            fn = self.pick(list(FUNCS), BAD_FUNCS)
            n = FUNCS.get(fn, 1)
            if self.bad():
                n = rng.randint(0, 4)
            if fn == "expiring_within" and rng.random() < 0.3:
                return f'expiring_within({self.int_(1, 90)}, "{self.balance()}")'
            return f"{fn}({', '.join(self.expr(1, ctx, item) for _ in range(n))})"
        if r < 0.73:
            return f"{self.pick(STATS, BAD_STATS)} over {self.window()}"
        if r < 0.78 and not item:
            return f'score("{rng.choice(SCORES)}")'
        if r < 0.84:
            return "[" + ", ".join(self.atom(ctx, item) for _ in range(rng.randint(0, 3))) + "]"
        if r < 0.9 and (ctx == "rule" or self.bad()):
            kw = rng.choice(["items", "lines"])
            where = f" where {self.expr(1, ctx, True)}" if rng.random() < 0.7 else ""
            if rng.random() < 0.5:
                return f"count({kw}{where})"
            return f"sum({self.pick(['amount', 'quantity * unit_price', 'quantity'], ['category', 'net_amount'])} of items{where})"
        return "(" + self.expr(1, ctx, item) + ")"

    def comparison(self, depth: int, ctx: str, item: bool) -> str:
        rng = self.rng
        left = self.sum_(depth, ctx, item)
        r = rng.random()
        if r < 0.6:
            return f"{left} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {self.sum_(depth, ctx, item)}"
        if r < 0.75:
            return f"{left} {rng.choice(['in', 'not in'])} {self.atom(ctx, item)}"
        return left

    def sum_(self, depth: int, ctx: str, item: bool) -> str:
        out = self.atom(ctx, item)
        while depth > 0 and self.rng.random() < 0.3:
            out += f" {self.rng.choice(['+', '-', '*', '/'])} {self.atom(ctx, item)}"
            depth -= 1
        if self.rng.random() < 0.05:
            out = "-" + out
        return out

    def expr(self, depth: int = 3, ctx: str = "rule", item: bool = False) -> str:
        rng = self.rng
        if self.wrong == 0 or rng.random() > self.wrong * 3:
            return self.cond(depth, ctx, item)
        r = rng.random()
        if depth <= 0 or r < 0.4:
            return self.comparison(0, ctx, item)
        if r < 0.55:
            return f"{self.expr(depth - 1, ctx, item)} and {self.expr(depth - 1, ctx, item)}"
        if r < 0.65:
            return f"{self.expr(depth - 1, ctx, item)} or {self.expr(depth - 1, ctx, item)}"
        if r < 0.72:
            return f"not {self.expr(depth - 1, ctx, item)}"
        if r < 0.85 and not item:
            return f"{rng.choice(['any item where', 'all items where'])} {self.comparison(depth - 1, ctx, True)}"
        return f"({self.expr(depth - 1, ctx, item)})"

    # ---------------------------------------------------------- typed expressions (mostly well formed)

    def num(self, depth: int, ctx: str, item: bool) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.3 or depth <= 0:
            return self.number()
        if r < 0.45:
            if item:
                return rng.choice(["quantity", "unit_price", "amount", "item.quantity"])
            if ctx == "rule":
                return rng.choice(["net_amount", "amount", "discount", "event.net_amount"] + self.fields[:2])
            return "member.points"
        if r < 0.55:
            return "member." + rng.choice(self.balances)
        if r < 0.65:
            return f"{rng.choice(STATS)} over {self.window()}"
        if r < 0.72 and ctx == "rule" and not item:
            where = f" where {self.cond(1, ctx, True)}" if rng.random() < 0.7 else ""
            if rng.random() < 0.5:
                return f"count({rng.choice(['items', 'lines'])}{where})"
            return f"sum({rng.choice(['amount', 'quantity * unit_price', 'quantity'])} of items{where})"
        if r < 0.8:
            fn = rng.choice(["weekday", "month", "day", "year"])
            return f"{fn}({rng.choice(['today', 'member.birthday', 'member.joined'])})"
        if r < 0.85:
            return f"{rng.choice(['days_since', 'days_until'])}({rng.choice(['member.joined', 'member.last_purchase', 'member.tier_expires'])})"
        if r < 0.9:
            return f"{rng.choice(['min', 'max'])}({self.num(depth - 1, ctx, item)}, {self.num(depth - 1, ctx, item)})"
        if r < 0.93 and not item:
            return f'score("{rng.choice(["rfm_score", "churn_risk", "clv"])}")'
        if r < 0.96:
            return f"{rng.choice(['round', 'floor', 'ceil', 'abs'])}({self.num(depth - 1, ctx, item)})"
        return f"({self.num(depth - 1, ctx, item)} {rng.choice(['+', '-', '*', '/'])} {self.num(depth - 1, ctx, item)})"

    def cond(self, depth: int, ctx: str, item: bool) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.35 or depth <= 0:
            return f"{self.num(depth, ctx, item)} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {self.num(depth - 1, ctx, item)}"
        if r < 0.5:
            if item:
                field_ = rng.choice(["category", "sku", "brand", "item.category"])
            elif ctx == "rule":
                field_ = rng.choice(["channel", "store", "member.tier", "lower(store)", "upper(channel)"])
            else:
                field_ = rng.choice(["member.tier", "member.name", "member.email"])
            value = f'"{rng.choice(["coffee", "tea", "app", "gold", MARKER, "生鲜"])}"'
            op = rng.random()
            if op < 0.5:
                return f"{field_} {rng.choice(['==', '!='])} {value}"
            if op < 0.8:
                return f'{field_} {rng.choice(["in", "not in"])} [{value}, "x"]'
            return f"{rng.choice(['contains', 'starts_with'])}({field_}, {value})"
        if r < 0.58:
            return f"weekday(today) {rng.choice(['==', 'in'])} {rng.choice(WEEKDAYS) if rng.random() < 0.5 else '[saturday, sunday]'}"
        if r < 0.63:
            return f"between({self.num(0, ctx, item)}, {rng.randint(0, 10)}, {rng.randint(10, 100)})"
        if r < 0.66:
            return "is_birthday(member.birthday)"
        if r < 0.69 and ctx == "rule" and not item:
            return f"hour(at) {rng.choice(['<', '>='])} {rng.randint(0, 23)}"
        if r < 0.72:
            return f"today {rng.choice(['<', '>='])} {self.date()}"
        if r < 0.77 and ctx == "rule" and not item:
            return f"{rng.choice(['any item where', 'all items where'])} {self.cond(0, ctx, True)}"
        if r < 0.85:
            return f"{self.cond(depth - 1, ctx, item)} {rng.choice(['and', 'or'])} {self.cond(depth - 1, ctx, item)}"
        if r < 0.9:
            return f"not ({self.cond(depth - 1, ctx, item)})"
        if r < 0.95 and self.member_fields:
            return f"member.{rng.choice(self.member_fields)} != none"
        return f"({self.cond(depth - 1, ctx, item)})"

    # ---------------------------------------------------------- declarations

    def header(self) -> str:
        rng = self.rng
        lines = []
        if rng.random() > 0.05:
            lines.append(f"currency {self.pick(CURRENCIES, BAD_CURRENCIES)}")
        if rng.random() > 0.05:
            lines.append(f'timezone "{self.pick(TIMEZONES, BAD_TIMEZONES)}"')
        if rng.random() < 0.5:
            lines.append(f"rounding {self.pick(ROUNDINGS, BAD_ROUNDINGS)}")
        for _ in range(rng.randint(0, 3)):
            b = self.name("bal")
            if rng.random() < 0.3:
                self.money_balances.append(b)
                lines.append(f"balance {b} money")
            else:
                self.balances.append(b)
                lines.append(f"balance {b}")
        if self.bad():
            lines.append(f"balance {rng.choice(self.balances)}")  # duplicate
        for b in self.balances + self.money_balances:
            r = rng.random()
            if r < 0.2:
                after = self.pick(["earning", "last activity", "joining"], ["purchase", "last  activity"])
                lines.append(f"{b} expire {self.int_(1, 36)} {self.unit()} after {after}")
            elif r < 0.3:
                lines.append(f"{b} expire at end of year")
            elif r < 0.35:
                lines.append(f"{b} never expire")
            if rng.random() < 0.1:
                lines.append(f"{b} pending {self.int_(1, 60)} {self.pick(['days', 'day'], ['weeks', 'months'])}")
            if rng.random() < 0.1:
                lines.append(f"{b} may go negative")
            if rng.random() < 0.1:
                lines.append(f"{b} can be transferred")
        if rng.random() < 0.2:
            lines.append(
                rng.choice(
                    ["refunds keep bonuses", "refunds reverse bonuses", "refunds reverse bonuses on full return"]
                )
            )
        sep = rng.choice(["\n  ", "\n  ", "  ", "; "])
        return f'program "{MARKER} {self.rng.choice(["Shop", "咖啡", "Café"])}" {{{sep}' + sep.join(lines) + "\n}\n"

    def tiers_block(self) -> str:
        rng = self.rng
        lines = []
        threshold = 0 if rng.random() < 0.8 else rng.randint(1, 100)
        for _ in range(rng.randint(0 if self.bad() else 1, 4)):
            t = self.name("tier")
            if self.bad() and self.tiers:
                t = self.tiers[0]  # duplicate
            self.tiers.append(t)
            mult = (
                f" earn x{rng.choice(['1.25', '1.5', '2', '0', '1000000', '9' * 5000])}" if rng.random() < 0.5 else ""
            )
            lines.append(f"{t} from {threshold if not self.bad() else self.number()}{mult}")
            threshold += rng.randint(1, 5000) * (-1 if self.bad() else 1)
        if rng.random() < 0.6:
            grace = f" grace {self.int_(0, 6)} {self.unit()}" if rng.random() < 0.5 else ""
            lines.append(f"review every {self.int_(1, 24)} {self.unit()}{grace}")
        return f"tiers by {self.pick(STATS, BAD_STATS)} over {self.window()} {{\n  " + "\n  ".join(lines) + "\n}\n"

    def coupon(self) -> str:
        rng = self.rng
        code = self.name("C")
        if self.bad() and self.coupons:
            code = self.coupons[0]
        self.coupons.append(code)
        stmts = []
        r = rng.random()
        if r < 0.4:
            stmts.append(
                f"discount {self.rng.randint(1, 100) if not self.bad() else self.rng.choice(['0', '150', '9' * 5000])}%"
            )
        elif r < 0.7:
            stmts.append(f"discount {self.number()}")
        elif r < 0.9:
            stmts.append(f"free item {self.text()}")
        if rng.random() < 0.7:
            stmts.append(f"valid {self.int_(1, 90)} days" if rng.random() < 0.6 else f"valid until {self.date()}")
        if rng.random() < 0.3:
            stmts.append(f"min spend {self.number()}")
        if rng.random() < 0.3:
            cats = ", ".join(self.text() if not self.bad() else self.number() for _ in range(rng.randint(0, 3)))
            stmts.append(f"only categories [{cats}]")
        if rng.random() < 0.3:
            stmts.append(f"limit {self.int_(1, 5)} per member")
        if rng.random() < 0.2:
            stmts.append(f"limit {self.int_(1, 10000)} total")
        if self.bad() and stmts:
            stmts.append(rng.choice(stmts))
        title = f" {self.text()}" if rng.random() < 0.6 else ""
        sep = rng.choice(["\n  ", "; ", " "])
        return f"coupon {code}{title} {{{sep}" + sep.join(stmts) + "\n}\n"

    def action(self, trigger: bool) -> str:
        rng = self.rng
        r = rng.random()
        bal = self.balance()
        upto = f" up to {self.int_(1, 1000)}" if rng.random() < 0.2 else ""
        if r < 0.15:
            amount = self.int_(1, 500) if rng.random() < 0.8 else f"({self.expr(1, 'trigger' if trigger else 'rule')})"
            return f"award {amount} {bal}"
        if r < 0.3 and (not trigger or self.bad()):
            cur = self.pick(CURRENCIES[:1] * 4 + CURRENCIES, BAD_CURRENCIES)
            src = self.pick(
                ["net_amount", "amount", "items", "items where " + self.expr(1, "rule", True)],
                ["store", "today", "member.tier"],
            )
            return f"award {self.int_(1, 10)} {bal} per {self.number()} {cur} of {src}{upto}"
        if r < 0.38 and (not trigger or self.bad()):
            where = f" where {self.expr(1, 'rule', True)}" if rng.random() < 0.6 else ""
            return f"award {self.int_(1, 10)} {bal} per item{where}{upto}"
        if r < 0.45 and (not trigger or self.bad()):
            src = self.pick(["net_amount", "items", "items where " + self.expr(1, "rule", True)], ["channel"])
            return f"award {rng.randint(0, 100) if not self.bad() else 1000}% of {src} as {bal}{upto}"
        if r < 0.52 and (not trigger or self.bad()):
            return (
                f"multiply {bal} by {self.pick(['2', '1.5', '0.5', '1.25'], ['0', '-1', _huge(rng), 'channel', '10%'])}"
            )
        if r < 0.58 and (not trigger or self.bad()):
            per = (
                f" per {self.pick(['transaction', 'day', 'week', 'month', 'year'], ['member', 'hour'])}"
                if rng.random() < 0.6
                else ""
            )
            return f"cap {bal} at {self.int_(1, 10000)}{per}"
        if r < 0.68:
            code = self.rng.choice(self.coupons) if self.coupons and not self.bad() else self.name("C")
            return f"issue coupon {code}"
        if r < 0.82:
            subject = f" with subject {self.text(True)}" if rng.random() < 0.3 else ""
            return f"send {self.pick(CHANNELS, BAD_CHANNELS)} {self.text(True)}{subject}"
        if r < 0.88:
            tier = self.rng.choice(self.tiers) if self.tiers and not self.bad() else self.name("tier")
            return f"set tier {tier}"
        if r < 0.95:
            name = self.pick(["cashback"], ["points", "donation", "miles_" + MARKER])
            args = []
            for _ in range(rng.randint(0, 3)):
                args.append(
                    f"{self.pick(['amount', 'max'], ['charity', 'amount'])}: {self.expr(1, 'trigger' if trigger else 'rule')}"
                )
            return f"reward {name}({', '.join(args)})"
        return self.setting(trigger)

    def setting(self, trigger: bool) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            times = "once" if rng.random() < 0.6 else f"{self.int_(1, 10)} times"
            per = (
                self.pick(["day", "week", "month", "year", "member", "event"], ["hour", "transaction"])
                if rng.random() < 0.6
                else f"{self.int_(1, 365)} {self.unit()}"
            )
            return f"limit {times} per {per}"
        if r < 0.5 and not trigger:
            return f"budget {self.int_(1, 100000)} {self.pick(self.balances + ['coupons'], ['euros', 'pints'])}"
        if r < 0.65:
            return f"priority {self.rng.randint(-10, 10) if not self.bad() else _huge(rng)}"
        if r < 0.85:
            if rng.random() < 0.5:
                to = f" to {self.date()}" if rng.random() < 0.6 else ""
                return f"valid from {self.date()}{to}"
            return f"valid until {self.date()}"
        if not trigger:
            g = self.rng.choice(self.groups) if self.groups and not self.bad() else self.name("g")
            return f'group "{g}"'
        return "limit once per day"

    def rule(self, indent: str = "") -> str:
        rng = self.rng
        ev = self.pick(self.events, BAD_EVENTS)
        when = f" when {self.expr(3)}" if rng.random() < 0.7 else ""
        stmts = [self.action(False) for _ in range(rng.randint(0 if self.bad() else 1, 4))]
        stmts += [self.setting(False) for _ in range(rng.randint(0, 2))]
        name = self.text() if not self.bad() else rng.choice(['"dup"', '""', '"' + "r" * 3000 + '"'])
        sep = rng.choice([f"\n{indent}  ", "; ", " "])
        return f"{indent}rule {name} on {ev}{when} {{{sep}" + sep.join(stmts) + f"\n{indent}}}\n"

    def trigger(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            sched = "daily"
        elif r < 0.7:
            sched = f"weekly on {self.pick(WEEKDAYS, ['mon', 'Monday', 'weekend'])}"
        else:
            sched = f"monthly on day {self.int_(1, 31) if not self.bad() else rng.choice(['0', '32', _huge(rng)])}"
        when = f" when {self.expr(2, 'trigger')}" if rng.random() < 0.8 else ""
        stmts = [self.action(True) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.7:
            stmts.append(self.setting(True))
        return f"trigger {self.text()} {sched}{when} {{\n  " + "\n  ".join(stmts) + "\n}\n"

    def campaign(self) -> str:
        rng = self.rng
        dates = ""
        if rng.random() < 0.5:
            dates += f" from {self.date()}"
        if rng.random() < 0.5:
            dates += f" to {self.date()}"
        body = []
        if rng.random() < 0.6:
            body.append(f"  budget {self.int_(1, 100000)} {self.balance()}\n")
        body += [self.rule("  ") for _ in range(rng.randint(0, 3))]
        if self.bad():
            body.append(self.rng.choice(['  trigger "t" daily { }\n', "  coupon X { }\n", '  campaign "c" { }\n']))
        return f"campaign {self.text()}{dates} {{\n" + "".join(body) + "}\n"

    def event_decl(self) -> str:
        rng = self.rng
        ev = self.name("ev") if rng.random() < 0.6 else rng.choice(["purchase", "refund", "signup"])
        if ev not in self.events:
            self.events.append(ev)
        fields = []
        for _ in range(rng.randint(0, 4)):
            f = self.name("f") if not self.bad() else rng.choice(["net_amount", "id", "at", "item"])
            self.fields.append(f)
            t = self.pick(TYPES, ["string", "int", "list", "of"])
            if rng.random() < 0.1:
                t = f"list of {self.pick(['text'], ['number', 'list'])}"
            fields.append(f"{f}: {t}")
        return f"event {ev} {{\n  " + "\n  ".join(fields) + "\n}\n"

    def member_decl(self) -> str:
        fields = []
        for _ in range(self.rng.randint(0, 4)):
            f = self.name("mf") if not self.bad() else self.rng.choice(["tier", "points", "name"])
            self.member_fields.append(f)
            fields.append(f"{f}: {self.pick(TYPES + ['list of text'], ['list of number', 'float'])}")
        return "member fields {\n  " + "\n  ".join(fields) + "\n}\n"

    def program(self) -> str:
        rng = self.rng
        parts = []
        if rng.random() < 0.3:
            parts.append(self.event_decl())
        if rng.random() < 0.3:
            parts.append(self.member_decl())
        if rng.random() > 0.04:
            parts.append(self.header())
        if self.bad():
            parts.append(self.header())  # a second header
        if rng.random() < 0.5:
            parts.append(self.tiers_block())
        for _ in range(rng.randint(0, 3)):
            parts.append(self.coupon())
        for _ in range(rng.randint(0, 2)):
            g = self.name("g")
            self.groups.append(g)
            parts.append(f'group "{g}" pick {self.pick(["best", "first"], ["worst", "all"])}\n')
        for _ in range(rng.randint(0, 5)):
            parts.append(self.rule())
        for _ in range(rng.randint(0, 2)):
            parts.append(self.campaign() if rng.random() < 0.5 else self.trigger())
        if rng.random() < 0.05:
            parts.append(f'include "missing_{MARKER}_{rng.randint(0, 9)}.loy"\n')
        if rng.random() < 0.3:
            rng.shuffle(parts)
        sep = rng.choice(["\n", "\n", "\n# a comment " + MARKER + "\n", ";\n"])
        return sep.join(parts)


def _deep(rng: Random) -> str:
    depth = rng.choice([59, 61, 200, 1000, 20_000])
    kind = rng.randrange(6)
    head = 'program "Deep" { currency CNY  timezone "Asia/Shanghai" }\n'
    if kind == 0:
        cond = "(" * depth + "net_amount > 1" + ")" * depth
    elif kind == 1:
        cond = "not " * depth + "true"
    elif kind == 2:
        cond = "net_amount > " + "-" * depth + "1"
    elif kind == 3:
        cond = " + ".join(["1"] * depth) + " > 0"
    elif kind == 4:
        cond = "[" * depth + "1" + "]" * depth + " == 1"
    else:
        cond = "true"
        return head + f'rule "R" on purchase {{ send sms "{{{"(" * depth + "1" + ")" * depth}}}" }}\n'
    return head + f'rule "R{MARKER}" on purchase when {cond} {{ award 1 point }}\n'


def special(rng: Random, text: str) -> str:
    """Encodings and odd characters over a whole file."""
    r = rng.random()
    if r < 0.15:
        return text.replace("\n", "\r\n")
    if r < 0.25:
        return text.replace("  ", "\t")
    if r < 0.35:
        return "\ufeff" + text
    if r < 0.4:
        return text.replace("\n", "\r")
    if r < 0.45:
        return text.replace(" ", "\u3000", rng.randint(1, 3))
    if r < 0.5:
        return text.replace("\n", "\u2028", rng.randint(1, 3))
    return text


def generated(rng: Random) -> str:
    if rng.random() < 0.03:
        return _deep(rng)
    wrong = rng.choice([0.0, 0.0, 0.02, 0.05, 0.1, 0.3])
    text = Gen(rng, wrong).program()
    if rng.random() < 0.3:
        text = special(rng, text)
    return text


# ------------------------------------------------------------------ mutated programs

_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|#[^\n]*|\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?%?|[^\W\d]\w*|==|!=|<=|>=|\s+|.', re.S)
_BASES: list[tuple[str, str]] | None = None


def bases() -> list[tuple[str, str]]:
    """The example programs mutations start from: (name, text)."""
    global _BASES
    if _BASES is None:
        files = sorted((ROOT / "dsl" / "examples").glob("*.loy")) + sorted((ROOT / "benchmarks").glob("*.loy"))
        _BASES = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in files]
    return _BASES


def _random_token(rng: Random) -> str:
    r = rng.random()
    if r < 0.45:
        return rng.choice(KEYWORDS)
    if r < 0.75:
        return rng.choice(PUNCT)
    if r < 0.9:
        return rng.choice(WEIRD)
    return rng.choice([_huge(rng), "2026-02-30", MARKER, "x" * 2000, '"' + MARKER, "{" * 30, "(" * 80])


def mutate(rng: Random, text: str) -> str:
    tokens = _TOKEN.findall(text)
    for _ in range(rng.choice([1, 1, 2, 3, 5, 10])):
        if not tokens:
            tokens = [_random_token(rng)]
        i = rng.randrange(len(tokens))
        op = rng.randrange(13)
        if op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, tokens[i])
        elif op == 2 and i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        elif op == 3:
            tokens.insert(i, " " + _random_token(rng) + " ")
        elif op == 4:
            tokens[i] = _random_token(rng)
        elif op == 5:
            tokens = tokens[: i + 1]
            if rng.random() < 0.5 and tokens:
                last = tokens[-1]
                tokens[-1] = last[: rng.randrange(len(last) + 1)]
        elif op == 6:
            tokens.insert(i, rng.choice(["{", "}", "(", ")", '"', "[", "]", "{{{{", "}}}}", '"""']))
        elif op == 7:  # a character inside a token
            tok = tokens[i]
            if tok:
                j = rng.randrange(len(tok))
                choice = rng.random()
                if choice < 0.4:
                    tok = tok[:j] + tok[j + 1 :]
                elif choice < 0.8:
                    tok = tok[:j] + rng.choice(WEIRD + PUNCT + ["a", "0", " "]) + tok[j:]
                else:
                    tok = tok[:j] + tok[j] * rng.randint(2, 5) + tok[j + 1 :]
                tokens[i] = tok
        elif op == 8:  # move a token somewhere else
            tok = tokens.pop(i)
            tokens.insert(rng.randrange(len(tokens) + 1), tok)
        elif op == 9:  # duplicate a stretch (whole declarations, often)
            j = min(len(tokens), i + rng.randint(1, 80))
            tokens[j:j] = tokens[i:j]
        elif op == 10:  # delete a stretch
            del tokens[i : i + rng.randint(1, 30)]
        elif op == 11 and tokens[i].startswith('"'):  # a placeholder in a text
            tok = tokens[i]
            tokens[i] = (
                tok[:-1] + rng.choice(["{", "{x}", "{(}", "{member.name", "}", "{{", "{" + MARKER + "}"]) + tok[-1:]
            )
        elif op == 12:  # a number out of range
            nums = [k for k, t in enumerate(tokens) if t[:1].isdigit()]
            if nums:
                tokens[rng.choice(nums)] = rng.choice([_huge(rng), "0", "100000000", "2026-02-30", "99%", "0%"])
    return "".join(tokens)


def mutated(rng: Random) -> str:
    if rng.random() < 0.25:
        base = Gen(rng, 0.0).program()
    else:
        base = rng.choice(bases())[1]
        # the examples carry no marker of their own: rename one rule or text so that the audit check has one
        base = base.replace('"', '"' + MARKER, 1)
    text = mutate(rng, base)
    if rng.random() < 0.1:
        text = special(rng, text)
    return text


def case(seed: int, index: int) -> tuple[str, str]:
    """Case ``index`` of ``seed``: (kind, text), independent of every other case."""
    rng = Random(f"{seed}:{index}")
    if rng.random() < 0.5:
        return "generated", generated(rng)
    return "mutated", mutated(rng)


# ------------------------------------------------------------------ the property


@dataclass
class Audit:
    """An audit hook that records risky events while ``armed``; installed once per process."""

    armed: bool = False
    events: list = field(default_factory=list)

    def hook(self, event: str, args) -> None:
        if not self.armed:
            return
        if event in ("exec", "compile"):
            src = args[0]
            if isinstance(src, bytes):
                src = src.decode("utf-8", "replace")
            if isinstance(src, str) and MARKER in src:
                self.events.append((event, "source contains the rule file's text: " + _clip(src)))
            elif event == "compile" and isinstance(src, str) and "__import__" in src:
                self.events.append((event, "compiled source contains __import__: " + _clip(src)))
        elif event in (
            "import",
            "open",
            "subprocess.Popen",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "socket.connect",
        ):
            self.events.append((event, repr(args)[:200]))


_AUDIT: Audit | None = None


def audit() -> Audit:
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = Audit()
        sys.addaudithook(_AUDIT.hook)
    return _AUDIT


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


@dataclass
class Result:
    seconds: float
    ok: bool = False
    kinds: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    evaluation_error: str | None = None


def error_kind(message: str) -> str:
    """A diagnostic's message with its particulars blanked: 'unknown tier 'glod'' -> 'unknown tier '_''."""
    kind = re.sub(r"'[^']*'", "'_'", message)
    kind = re.sub(r'"[^"]*"', '"_"', kind)
    kind = re.sub(r"\d+(\.\d+)?", "N", kind)
    kind = re.sub(r"expected .*", "expected ...", kind)
    return kind[:90]


def warm_up() -> None:
    """Load everything a first check and evaluation loads (modules, grammar tables, time zones)."""
    from loyalty_engine.program import check_program, load_program
    from tests.conftest import member, purchase

    for name, text in bases():
        check_program(name, text=text)
    for zone in TIMEZONES + BAD_TIMEZONES:
        check_program("warm.loy", text=f'program "W" {{ currency CNY timezone "{zone}" }}\n')
    for i in range(300):
        text = Gen(Random(i), 0.0).program()
        try:
            result = check_program("warm.loy", text=text)
        except Exception:  # noqa: BLE001 - warming only
            continue
        if result.ok:
            try:
                outcome = load_program("warm.loy", text=text).evaluate(purchase(("A", "coffee", 1, "20.00")), member())
                _ = outcome.effects, outcome.hints, outcome.explanations
            except Exception:  # noqa: BLE001 - warming only
                pass
    for i in range(300):
        with contextlib.suppress(Exception):  # warming only; the run reports it
            check_program("warm.loy", text=mutated(Random(i)))
    check_program("warm.loy", text=_deep(Random(1)))


DEEP_TIME_LIMIT = 2.0


def time_limit_for(text: str) -> float:
    """1 s, but 2 s for the nesting cases (up to 20,000 deep): RELIABILITY.md asks of them that they fail
    cleanly. Brackets that nest too deeply are refused before parsing (milliseconds), but 20,000 chained
    'not's or '+'s are only found too deep in the tree, after Lark's ~0.5 s parse of them on this machine."""
    return DEEP_TIME_LIMIT if text.startswith('program "Deep"') else TIME_LIMIT


def check_case(text: str, name: str = FILE_NAME, time_limit: float | None = None) -> Result:
    """Check one file against the property; returns its time, error kinds and violations."""
    from loyalty_engine.errors import LoyaltyError
    from loyalty_engine.program import check_program, load_program
    from tests.conftest import member, purchase

    hook = audit()
    hook.events.clear()
    violations: list[str] = []
    hook.armed = True
    start = time.perf_counter()
    try:
        result = check_program(name, text=text)
    except BaseException as exc:  # noqa: BLE001 - the property is that nothing escapes
        hook.armed = False
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Result(time.perf_counter() - start, violations=[f"check_program raised {_exc(exc)}"])
    elapsed = time.perf_counter() - start
    hook.armed = False
    out = Result(elapsed, ok=result.ok)
    if time_limit is None:
        time_limit = time_limit_for(text)
    if elapsed > time_limit:
        violations.append(f"checking took {elapsed:.2f} s (limit {time_limit} s)")
    lines = _lines(text)
    for diag in result.diagnostics:
        problem = _diagnostic_problem(diag, name, lines)
        if problem:
            violations.append(problem)
        if diag.severity == "error":
            out.kinds.append(error_kind(diag.message))
    if result.ok:
        hook.armed = True
        try:
            program = load_program(name, text=text)
            outcome = program.evaluate(purchase(("A", "coffee", 2, "20.00"), ("B", "tea", 1, "5.50")), member())
            _ = outcome.points, outcome.effects, outcome.hints, outcome.explanations
            if program.code.triggers is not None:
                import datetime as dt

                from tests.conftest import SHANGHAI

                triggered = program.run_triggers(member(), dt.datetime(2026, 5, 20, 9, 0, tzinfo=SHANGHAI))
                _ = triggered.effects
        except LoyaltyError as exc:
            out.evaluation_error = _exc(exc)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            violations.append(f"a clean file failed to load or evaluate: {_exc(exc)}")
        finally:
            hook.armed = False
    for event, detail in hook.events:
        if event == "open" and "include" in text:
            continue  # an include opens the file it names: that is what include is for
        violations.append(f"audit: {event} {detail}")
    out.violations = violations
    return out


def _exc(exc: BaseException) -> str:
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.split('loyalty_engine')[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {_clip(str(exc), 200)}{where}"


def _lines(text: str) -> list[str]:
    """Lines as the parser counts them (and editors show them): ended by \\n only, a \\r before it and a BOM dropped."""
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def _diagnostic_problem(diag, name: str, lines: list[str]) -> str | None:
    where = f"{diag.line}:{diag.column}"
    if diag.path != name:
        if diag.path.endswith(".loy") and "include" in "\n".join(lines):
            return None
        return f"diagnostic names {diag.path!r}, not {name!r}: {diag.message}"
    if not isinstance(diag.line, int) or not isinstance(diag.column, int):
        return f"diagnostic position is not whole numbers ({where}): {diag.message}"
    if diag.line < 1 or diag.column < 1:
        return f"diagnostic at {where}, before the file starts: {diag.message}"
    if diag.line > max(1, len(lines)):
        return f"diagnostic at line {diag.line}, the file has {len(lines)} lines: {diag.message}"
    line_text = lines[diag.line - 1] if lines else ""
    if diag.column > len(line_text) + 1:
        return f"diagnostic at column {diag.column}, line {diag.line} has {len(line_text)} characters: {diag.message}"
    line_text = re.sub("[\ud800-\udfff]", "\ufffd", line_text)  # lone surrogates are shown as U+FFFD
    if diag.source_line != line_text:
        return (
            f"diagnostic at {where} shows the source line {diag.source_line!r}, but line {diag.line} is {line_text!r}"
        )
    try:
        rendered = diag.render()
    except Exception as exc:  # noqa: BLE001
        return f"diagnostic does not render ({_exc(exc)}): {diag.message}"
    try:
        rendered.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"diagnostic at {where} cannot be printed: {exc}"
    if not rendered.startswith(f"{name}:{diag.line}:{diag.column}: {diag.severity}: "):
        return f"diagnostic renders as {rendered.splitlines()[0]!r}"
    parts = rendered.split("\n")
    if line_text.strip() and (len(parts) < 3 or "^" not in parts[2]):
        return f"diagnostic at {where} renders without its source line and caret: {rendered!r}"
    if not diag.message.strip():
        return f"diagnostic at {where} has no message"
    return None


@dataclass
class Summary:
    files: int = 0
    clean: int = 0
    with_errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    failures: list[tuple[int, str, str, list[str]]] = field(default_factory=list)
    evaluation_errors: list[tuple[int, str]] = field(default_factory=list)
    by_case_kind: dict[str, int] = field(default_factory=dict)


def run(seed: int, files: int, start: int = 0, progress: Callable[[int, Summary], None] | None = None) -> Summary:
    warm_up()
    summary = Summary()
    for index in range(start, start + files):
        kind, text = case(seed, index)
        res = check_case(text)
        summary.files += 1
        summary.by_case_kind[kind] = summary.by_case_kind.get(kind, 0) + 1
        summary.times.append(res.seconds)
        if res.ok:
            summary.clean += 1
        elif res.kinds:
            summary.with_errors += 1
        for k in set(res.kinds):
            summary.kinds[k] = summary.kinds.get(k, 0) + 1
        if res.evaluation_error:
            summary.evaluation_errors.append((index, res.evaluation_error))
        if res.violations:
            summary.failures.append((index, kind, text, res.violations))
        if progress:
            progress(index, summary)
    return summary


def reproducer(seed: int, index: int, text: str, violations: list[str]) -> str:
    shown = text if len(text) <= 3000 else text[:1500] + f"\n... ({len(text)} chars) ...\n" + text[-1500:]
    return (
        f"seed {seed} case {index}: "
        + "; ".join(violations[:5])
        + f"\n  replay: python benchmarks/fuzz_rules.py --seed {seed} --case {index}"
        + f"\n  text ({len(text)} chars): {shown!r}"
    )
