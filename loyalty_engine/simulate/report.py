"""What a simulation found: the figures, and the comparison of two programs over one history.

:class:`Tally` accumulates while the replay runs (every ledger line, coupon,
tier change and trigger firing passes through it) and :meth:`Tally.figures`
returns plain data (numbers as strings where they are Decimal), which the
terminal table, ``--json`` and the HTML page are all built from.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from decimal import Decimal
from typing import Any

from ..engine.outcome import fmt

ZERO = Decimal(0)
CENT = Decimal("0.01")
TOP = 10
MAX_ERRORS = 50


def _s(value: Decimal) -> str:
    """A Decimal as plain text: 1234, 12.5, never an exponent."""
    value = value.normalize() if value == value.to_integral_value() else value
    return format(value.quantize(Decimal(1)) if value == value.to_integral_value() else value, "f")


class Tally:
    def __init__(self, program, point_value: Decimal):
        self.program = program
        self.point_value = Decimal(point_value)
        tiers = program.checked.tiers
        self.tier_names = [lvl.name.name for lvl in tiers.levels] if tiers is not None else []
        self.kinds: dict[tuple[str, str], Decimal] = {}  # (balance, kind) -> sum
        self.rule_points: dict[str, Decimal] = {}
        self.rule_reversed: dict[str, Decimal] = {}
        self.rule_hits: Counter = Counter()
        self.member_earned: dict[str, Decimal] = {}
        self.month_kinds: dict[str, dict[str, Decimal]] = {}
        self._months: dict[dt.date, str] = {}  # day -> "YYYY-MM"
        self.outstanding = ZERO  # points, as the ledger says now
        self.coupons: dict[str, Counter] = {}
        self.upgrades = 0
        self.tier_months: dict[str, Counter] = {}  # "YYYY-MM" -> upgrades, downgrades
        self.tz = zoneinfo.ZoneInfo(program.timezone)
        self.downgrades = 0
        self.fired: Counter = Counter()
        self.messages = 0
        self.rewards: dict[str, dict] = {}
        self.types: Counter = Counter()
        self.refused: Counter = Counter()
        self.errors = 0
        self.error_lines: list[dict] = []
        self.members_loaded = 0
        self.skipped = 0
        self.outside = 0
        self.first: dt.date | None = None
        self.last: dt.date | None = None
        self.snapshots: list[dict] = []

    # -------------------------------------------------------------- from the store

    def entry(self, e) -> None:
        key = (e.balance, e.kind)
        self.kinds[key] = self.kinds.get(key, ZERO) + e.amount
        if e.balance != "points":
            return
        self.outstanding += e.amount
        name = self._months.get(e.day)
        if name is None:
            name = self._months[e.day] = e.day.strftime("%Y-%m")
        month = self.month_kinds.setdefault(name, {})
        month[e.kind] = month.get(e.kind, ZERO) + e.amount
        if e.kind == "earn":
            rule = e.rule or "-"
            self.rule_points[rule] = self.rule_points.get(rule, ZERO) + e.amount
            self.member_earned[e.member] = self.member_earned.get(e.member, ZERO) + e.amount
        elif e.kind == "reverse":
            rule = e.rule or "-"
            self.rule_reversed[rule] = self.rule_reversed.get(rule, ZERO) + e.amount
            self.member_earned[e.member] = self.member_earned.get(e.member, ZERO) + e.amount

    def coupon_issued(self, coupon) -> None:
        self.coupons.setdefault(coupon.template, Counter())["issued"] += 1

    def coupon_status(self, coupon, before: str) -> None:
        if coupon.status != before and coupon.status in ("redeemed", "void"):
            self.coupons.setdefault(coupon.template, Counter())[coupon.status] += 1

    def tier_change(self, member: str, before: str | None, after: str, at) -> None:
        names = self.tier_names
        month = self.tier_months.setdefault(at.astimezone(self.tz).strftime("%Y-%m"), Counter())
        if before in names and after in names:
            if names.index(after) > names.index(before):
                self.upgrades += 1
                month["upgrades"] += 1
            elif names.index(after) < names.index(before):
                self.downgrades += 1
                month["downgrades"] += 1
        elif after in names:
            self.upgrades += 1
            month["upgrades"] += 1

    def firing(self, member: str, key: str, at) -> None:
        if key.startswith("trigger:"):
            self.fired[key[8:]] += 1

    def message(self, message) -> None:
        self.messages += 1

    def reward(self, entry) -> None:
        """A plugin reward type's journal line (cashback, miles...): summed per type and unit."""
        key = f"{entry.reward} ({entry.unit})" if entry.unit else entry.reward
        per = self.rewards.setdefault(key, {"granted": ZERO, "reversed": ZERO, "count": 0})
        if entry.reverses is not None:
            per["reversed"] -= entry.amount or ZERO
        else:
            per["granted"] += entry.amount or ZERO
            per["count"] += 1

    # -------------------------------------------------------------- from the replay

    def error(self, source: str, number: int, problem: str, code: str | None = None) -> None:
        self.errors += 1
        if code:
            self.refused[code] += 1
        shown = self.refused[code] <= 5 if code else self.errors - sum(self.refused.values()) <= MAX_ERRORS
        if shown:  # every bad line up to MAX_ERRORS, the first few refusals of each kind
            self.error_lines.append({"file": source, "line": number, "error": problem, "code": code})

    def result(self, data: dict, result) -> None:
        self.types[data.get("type", "?")] += 1
        outcome = getattr(result, "outcome", None)
        if outcome is not None and outcome.raw is not None:
            for name in outcome.fired:
                self.rule_hits[name] += 1

    def start(self, day: dt.date) -> None:
        self.first = self.first or day
        self.last = day

    def day_done(self, day: dt.date, report, store) -> None:
        self.last = day
        if (day + dt.timedelta(days=1)).day == 1:  # the end of a month: a snapshot
            self.snapshot(day, store)

    def snapshot(self, day: dt.date, store) -> None:
        tiers = Counter(r.member.tier or "-" for r in store.members.values())
        self.snapshots.append(
            {
                "day": day.isoformat(),
                "outstanding": _s(self.outstanding),
                "members": len(store.members),
                "tiers": dict(tiers),
            }
        )

    # -------------------------------------------------------------- the figures

    def figures(self, store) -> dict[str, Any]:
        self.close(store)
        return self.summary(member_summaries(store))

    def close(self, store) -> None:
        """The last day's snapshot, once the replay is over."""
        if self.last is not None and (not self.snapshots or self.snapshots[-1]["day"] != self.last.isoformat()):
            self.snapshot(self.last, store)

    # -------------------------------------------------------------- replays of parts of the members, merged

    _SUMS = ("kinds", "rule_points", "rule_reversed", "member_earned")
    _COUNTERS = ("rule_hits", "fired", "types", "refused")
    _COUNTS = ("upgrades", "downgrades", "messages", "errors", "members_loaded", "skipped", "outside")

    def state(self) -> dict[str, Any]:
        """What this tally counted, as plain data (picklable), for :meth:`absorb`."""
        names = (*self._SUMS, *self._COUNTERS, *self._COUNTS)
        out = {name: getattr(self, name) for name in names}
        out.update(
            month_kinds=self.month_kinds,
            coupons=self.coupons,
            tier_months=self.tier_months,
            rewards=self.rewards,
            outstanding=self.outstanding,
            error_lines=self.error_lines,
            first=self.first,
            last=self.last,
            snapshots=self.snapshots,
        )
        return out

    def absorb(self, state: dict[str, Any]) -> None:
        """Add what a replay of other members counted (their events, their days), as if one replay had."""
        for name in self._SUMS:
            mine = getattr(self, name)
            for key, value in state[name].items():
                mine[key] = mine.get(key, ZERO) + value
        for name in self._COUNTERS:
            getattr(self, name).update(state[name])
        for name in self._COUNTS:
            setattr(self, name, getattr(self, name) + state[name])
        for month, kinds in state["month_kinds"].items():
            mine = self.month_kinds.setdefault(month, {})
            for kind, value in kinds.items():
                mine[kind] = mine.get(kind, ZERO) + value
        for name in ("coupons", "tier_months"):
            mine = getattr(self, name)
            for key, counter in state[name].items():
                mine.setdefault(key, Counter()).update(counter)
        for key, per in state["rewards"].items():
            mine = self.rewards.setdefault(key, {"granted": ZERO, "reversed": ZERO, "count": 0})
            for field_name, value in per.items():
                mine[field_name] += value
        self.outstanding += state["outstanding"]
        days = [d for d in (self.first, self.last, state["first"], state["last"]) if d is not None]
        self.first, self.last = (min(days), max(days)) if days else (None, None)
        self._absorb_snapshots(state["snapshots"])
        self._absorb_errors(state["error_lines"])

    def _absorb_snapshots(self, theirs: list[dict]) -> None:
        days = {snap["day"]: snap for snap in self.snapshots}
        for snap in theirs:
            mine = days.get(snap["day"])
            if mine is None:
                days[snap["day"]] = {**snap, "tiers": dict(snap["tiers"])}
                continue
            mine["outstanding"] = _s(Decimal(mine["outstanding"]) + Decimal(snap["outstanding"]))
            mine["members"] += snap["members"]
            tiers = Counter(mine["tiers"])
            tiers.update(snap["tiers"])
            mine["tiers"] = dict(tiers)
        self.snapshots = [days[day] for day in sorted(days)]

    def _absorb_errors(self, theirs: list[dict]) -> None:
        """Keep the lines one replay would have kept: in file order (members first), every bad line up to
        MAX_ERRORS and the first five refusals of each kind."""
        merged = sorted([*self.error_lines, *theirs], key=lambda e: (e["file"] != "members", e["line"]))
        kept, refusals, others = [], Counter(), 0
        for line in merged:
            if line["code"]:
                refusals[line["code"]] += 1
                shown = refusals[line["code"]] <= 5
            else:
                others += 1
                shown = others <= MAX_ERRORS
            if shown:
                kept.append(line)
        self.error_lines = kept

    # -------------------------------------------------------------- the figures

    def summary(self, members: dict[str, tuple]) -> dict[str, Any]:
        """The figures, given each member's ``(name, tier, points balance)`` at the end."""
        program = self.program
        points = {
            kind: -v if kind in ("redeem", "expire") else v for (b, kind), v in self.kinds.items() if b == "points"
        }
        issued = points.get("earn", ZERO)
        outstanding = self.outstanding
        balances: dict[str, dict[str, str]] = {}
        for (balance, kind), value in sorted(self.kinds.items()):
            balances.setdefault(balance, {})[kind] = _s(value)
        rules = []
        names = [r.name for r in program.checked.rules]
        for name in names:
            if name in self.rule_hits or name in self.rule_points:
                rules.append(
                    {
                        "rule": name,
                        "hits": self.rule_hits.get(name, 0),
                        "points": _s(self.rule_points.get(name, ZERO)),
                        "reversed": _s(-self.rule_reversed.get(name, ZERO)),
                    }
                )
        top = sorted(self.member_earned.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        months = []
        for month in sorted(set(self.month_kinds) | set(self.tier_months)):
            per = self.month_kinds.get(month, {})
            changes = self.tier_months.get(month, Counter())
            months.append(
                {
                    "month": month,
                    "issued": _s(per.get("earn", ZERO)),
                    "reversed": _s(-per.get("reverse", ZERO)),
                    "redeemed": _s(-per.get("redeem", ZERO)),
                    "expired": _s(-per.get("expire", ZERO)),
                    "upgrades": changes["upgrades"],
                    "downgrades": changes["downgrades"],
                }
            )
        final_tiers = Counter(tier or "-" for _, tier, _ in members.values())
        return {
            "program": {
                "name": program.name,
                "version": program.version[:12],
                "currency": program.currency,
                "timezone": program.timezone,
            },
            "period": {
                "from": self.first.isoformat() if self.first else None,
                "to": self.last.isoformat() if self.last else None,
                "days": (self.last - self.first).days + 1 if self.first and self.last else 0,
            },
            "events": {
                "applied": dict(sorted(self.types.items(), key=lambda kv: (-kv[1], kv[0]))),  # the most first
                "errors": self.errors,
                "refused": dict(self.refused),
                "error_lines": self.error_lines,
                "skipped": self.skipped,
                "outside_period": self.outside,
            },
            "members": {"count": len(members), "loaded": self.members_loaded},
            "points": {
                "issued": _s(issued),
                "reversed": _s(-points.get("reverse", ZERO)),
                "redeemed": _s(points.get("redeem", ZERO)),
                "expired": _s(points.get("expire", ZERO)),
                "adjusted": _s(points.get("adjust", ZERO)),
                "opening": _s(points.get("opening", ZERO)),
                "outstanding": _s(outstanding),
                "point_value": _s(self.point_value),
                "liability": str((outstanding * self.point_value).quantize(CENT)),
                "currency": program.currency,
            },
            "balances": balances,
            "rules": rules,
            "tiers": {
                "final": {
                    t: final_tiers.get(t, 0) for t in [*self.tier_names, "-"] if final_tiers.get(t, 0) or t != "-"
                },
                "upgrades": self.upgrades,
                "downgrades": self.downgrades,
            },
            "coupons": {
                t: {k: c.get(k, 0) for k in ("issued", "redeemed", "void")} for t, c in sorted(self.coupons.items())
            },
            "triggers": dict(sorted(self.fired.items())),
            "messages": self.messages,
            "rewards": {
                k: {"granted": _s(v["granted"]), "reversed": _s(v["reversed"]), "count": v["count"]}
                for k, v in sorted(self.rewards.items())
            },
            "monthly": months,
            "snapshots": self.snapshots,
            "top_members": [
                {
                    "member": m,
                    "name": members[m][0] if m in members else None,
                    "earned": _s(v),
                    "balance": _s(members[m][2]) if m in members else "0",
                    "tier": members[m][1] if m in members else None,
                }
                for m, v in top
            ],
            "member_outcomes": {
                m: (points, self.member_earned.get(m, ZERO), tier) for m, (_, tier, points) in members.items()
            },
        }


def member_summaries(store) -> dict[str, tuple]:
    """Each member's ``(name, tier, points balance)``: what the figures read of the members at the end."""
    return {m: (r.member.name, r.member.tier, r.balances.get("points", ZERO)) for m, r in store.members.items()}


# ------------------------------------------------------------------ two programs, side by side

# (section, key, label) of the figures compared side by side
HEADLINE = (
    ("points", "issued", "points issued"),
    ("points", "reversed", "points reversed by refunds"),
    ("points", "redeemed", "points redeemed"),
    ("points", "expired", "points expired"),
    ("points", "outstanding", "points outstanding"),
    ("points", "liability", "liability"),
)


def _d(text) -> Decimal:
    return Decimal(str(text)) if text not in (None, "") else ZERO


def compare(a: dict, b: dict, top: int = TOP) -> dict[str, Any]:
    """Every figure of ``a`` (the program) next to ``b`` (the other one), with the difference b - a."""
    rows = []

    def row(label, x, y):
        x, y = _d(x), _d(y)
        rows.append({"figure": label, "a": _s(x), "b": _s(y), "difference": _s(y - x)})

    for section, key, label in HEADLINE:
        row(label, a[section][key], b[section][key])
    for name in dict.fromkeys([*a["tiers"]["final"], *b["tiers"]["final"]]):
        row(f"members in {name} (end)", a["tiers"]["final"].get(name, 0), b["tiers"]["final"].get(name, 0))
    row("tier upgrades", a["tiers"]["upgrades"], b["tiers"]["upgrades"])
    row("tier downgrades", a["tiers"]["downgrades"], b["tiers"]["downgrades"])
    for t in sorted(set(a["coupons"]) | set(b["coupons"])):
        for k in ("issued", "redeemed"):
            row(f"coupon {t} {k}", a["coupons"].get(t, {}).get(k, 0), b["coupons"].get(t, {}).get(k, 0))
    for t in sorted(set(a["triggers"]) | set(b["triggers"])):
        row(f"trigger {t} fired", a["triggers"].get(t, 0), b["triggers"].get(t, 0))
    row("messages", a["messages"], b["messages"])
    for k in sorted(set(a["rewards"]) | set(b["rewards"])):
        ra, rb = a["rewards"].get(k, {}), b["rewards"].get(k, {})
        row(f"reward {k} granted", ra.get("granted", 0), rb.get("granted", 0))
    rules = []
    ra = {r["rule"]: r for r in a["rules"]}
    rb = {r["rule"]: r for r in b["rules"]}
    for name in dict.fromkeys([*ra, *rb]):
        x, y = ra.get(name, {}), rb.get(name, {})
        rules.append(
            {
                "rule": name,
                "hits_a": x.get("hits", 0),
                "hits_b": y.get("hits", 0),
                "points_a": x.get("points", "0"),
                "points_b": y.get("points", "0"),
                "difference": _s(_d(y.get("points")) - _d(x.get("points"))),
            }
        )
    ma, mb = a["member_outcomes"], b["member_outcomes"]
    changed = []
    for m in set(ma) | set(mb):
        xa = ma.get(m, (ZERO, ZERO, None))
        xb = mb.get(m, (ZERO, ZERO, None))
        diff = xb[1] - xa[1]
        if diff or xa[2] != xb[2]:
            changed.append((abs(diff), m, xa, xb, diff))
    changed.sort(key=lambda c: (-c[0], c[1]))
    members = [
        {
            "member": m,
            "earned_a": _s(xa[1]),
            "earned_b": _s(xb[1]),
            "difference": _s(diff),
            "tier_a": xa[2],
            "tier_b": xb[2],
        }
        for _, m, xa, xb, diff in changed[:top]
    ]
    return {
        "a": a["program"],
        "b": b["program"],
        "figures": rows,
        "rules": rules,
        "members_changed": len(changed),
        "members": members,
    }


def public(figures: dict) -> dict:
    """The figures without the per-member outcomes (kept only for comparisons)."""
    return {k: v for k, v in figures.items() if k != "member_outcomes"}


def headline(figures: dict) -> str:
    p = figures["points"]
    return (
        f"issued {fmt(_d(p['issued']))}, redeemed {fmt(_d(p['redeemed']))}, expired {fmt(_d(p['expired']))}, "
        f"outstanding {fmt(_d(p['outstanding']))} points = {p['liability']} {p['currency']}"
    )
