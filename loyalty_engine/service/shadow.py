"""Shadow mode: run a candidate program beside the live one on every processed event.

::

    engine = Engine(live, store, shadow=candidate)     # or engine.shadow(candidate) later
    engine.process(purchase)                           # applies the live program only

For each event the live program applies, the candidate is evaluated on the
same member as the live program found them (its own context, built from the
store before the event is applied) and the two outcomes are compared: the
change of every balance, the coupons issued, the tier reached, the messages
sent, plugin rewards, and the points per rule. One row per event goes to the store's
``shadow_diffs`` table, in the event's own transaction, so a retried event is
compared once and a rolled-back one not at all. ``loyalty shadow-report``
summarises the rows.

The candidate can never make the live processing fail: anything it raises is
recorded as that event's ``error`` and the live event goes on. Both sides are
compared as evaluated (coupons before the per-member and total limits the
store applies), so the difference is the rules' difference.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from ..engine.effects import json_number
from ..engine.explain import tier_upgrade
from ..engine.outcome import Outcome
from ..program import Program
from .history import ContextBuilder

ZERO = Decimal(0)


def summary(outcome: Outcome) -> dict[str, Any]:
    """What an outcome would do, in comparable form."""
    if outcome.raw is None:
        return {"totals": {}, "coupons": [], "tier": None, "messages": [], "rewards": [], "rules": {}}
    tier = outcome.raw[2]
    if tier is None and outcome.event is not None:
        upgrade = tier_upgrade(outcome, None)
        tier = upgrade.tier if upgrade is not None else None
    per_rule: dict[str, Decimal] = {}
    messages: list[str] = []
    rewards: list[str] = []
    for effect in outcome.effects:
        if (
            effect.type == "award"
            and effect.balance == "points"
            and effect.rule
            or effect.type == "cap"
            and effect.balance == "points"
            and effect.rule
        ):
            per_rule[effect.rule] = per_rule.get(effect.rule, ZERO) + Decimal(effect.points)
        elif effect.type == "message":
            messages.append(f"{effect.channel}: {effect.text}")
        elif effect.type == "reward":  # plugin reward types (cashback, miles...): compared by their arguments
            args = ", ".join(f"{k}: {json_number(v) if isinstance(v, Decimal) else v}" for k, v in effect.args.items())
            rewards.append(f"{effect.reward}({args})")
    for name in outcome.fired:
        per_rule.setdefault(name, ZERO)
    return {
        "totals": {b: v for b, v in outcome.totals.items() if v},
        "coupons": list(outcome.coupons),
        "tier": tier,
        "messages": messages,
        "rewards": rewards,
        "rules": per_rule,
    }


def differences(live: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """The parts of two summaries that differ, each as [live, candidate]."""
    out: dict[str, Any] = {}
    balances = {}
    for b in sorted(set(live["totals"]) | set(candidate["totals"])):
        a, c = live["totals"].get(b, ZERO), candidate["totals"].get(b, ZERO)
        if a != c:
            balances[b] = [json_number(a), json_number(c)]
    if balances:
        out["balances"] = balances
    for key in ("coupons", "tier", "messages", "rewards"):
        if live[key] != candidate[key]:
            out[key] = [live[key], candidate[key]]
    rules = {}
    for name in sorted(set(live["rules"]) | set(candidate["rules"])):
        a, c = live["rules"].get(name), candidate["rules"].get(name)
        if a != c:
            rules[name] = [None if a is None else json_number(a), None if c is None else json_number(c)]
    if rules:
        out["rules"] = rules
    return out


class Shadow:
    """Evaluates ``candidate`` beside the engine's live program and records the differences."""

    def __init__(self, engine, candidate: Program):
        self.engine = engine
        self.candidate = candidate
        self.context = ContextBuilder(candidate, engine.store)
        self.log = ShadowLog(engine.store)

    def observe(self, record, event, live: Outcome) -> None:
        """Compare for one event (called by Engine.process before the live outcome is applied). Never raises."""
        try:
            try:
                if event.type not in self.candidate.event_types:
                    raise ValueError(f"the candidate does not know the event type '{event.type}'")
                context = self.context.build(record, self.engine.local_day(event.at))
                cand = summary(self.candidate.evaluate(event, context))
                error = None
            except Exception as exc:  # noqa: BLE001 - whatever the candidate does, the live event goes on
                cand, error = None, f"{type(exc).__name__}: {exc}"
            mine = summary(live)
            diff = differences(mine, cand) if cand is not None else {}
            status = "error" if error else "differs" if diff else "same"
            self.log.add(
                event=event.id,
                member=event.member,
                at=event.at,
                live=self.engine.program,
                candidate=self.candidate,
                status=status,
                live_points=mine["totals"].get("points", ZERO),
                candidate_points=None if cand is None else cand["totals"].get("points", ZERO),
                details=diff,
                error=error,
            )
        except Exception:  # noqa: BLE001, S110 - recording must not fail the live event either
            self.log.failed += 1


class ShadowLog:
    """Rows of ``shadow_diffs`` (migration m008_shadow_diffs), written through the store's connection."""

    def __init__(self, store):
        self.store = store
        self.failed = 0  # rows that could not be written (the live events were not affected)

    def add(self, *, event, member, at, live, candidate, status, live_points, candidate_points, details, error):
        conn = self.store.conn
        delta = None if candidate_points is None else candidate_points - live_points
        conn.execute(
            "INSERT INTO shadow_diffs (event, member, at, live, candidate, candidate_name, status, live_points,"
            " candidate_points, delta, details, error, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event,
                member,
                at.isoformat(),
                live.version,
                candidate.version,
                candidate.name,
                status,
                str(live_points),
                None if candidate_points is None else str(candidate_points),
                None if delta is None else str(delta),
                json.dumps(details, ensure_ascii=False, default=str),
                error,
                dt.datetime.now(dt.UTC).isoformat(),
            ),
        )


# ------------------------------------------------------------------ the report


def report(store, candidate: str | None = None, top: int = 5) -> list[dict[str, Any]]:
    """One summary per candidate version (the latest first), or only ``candidate`` (a version prefix)."""
    conn = store.conn
    versions = [
        row[0]
        for row in conn.execute("SELECT candidate FROM shadow_diffs GROUP BY candidate ORDER BY max(id) DESC")
        if candidate is None or row[0].startswith(candidate)
    ]
    return [_report_one(conn, version, top) for version in versions]


def _report_one(conn, version: str, top: int) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT event, member, status, live_points, candidate_points, delta, details, error, candidate_name, live"
        " FROM shadow_diffs WHERE candidate = ? ORDER BY id",
        (version,),
    ).fetchall()
    counts = {"events": len(rows), "same": 0, "differs": 0, "error": 0}
    live_total = cand_total = ZERO
    members: dict[str, Decimal] = {}
    rules: dict[str, list[Decimal]] = {}
    coupons: dict[str, list[int]] = {}
    tiers = messages = rewards = 0
    errors: list[dict[str, str]] = []
    balances: dict[str, list[Decimal]] = {}
    name = rows[0][8] if rows else None
    lives = sorted({r[9] for r in rows})
    for event, member, status, live_points, cand_points, delta, details, error, _name, _live in rows:
        counts[status] += 1
        if status == "error":
            if len(errors) < top:
                errors.append({"event": event, "error": error})
            continue
        live_total += Decimal(live_points)
        cand_total += Decimal(cand_points)
        if delta and Decimal(delta):
            members[member] = members.get(member, ZERO) + Decimal(delta)
        diff = json.loads(details)
        for rule, (a, c) in diff.get("rules", {}).items():
            acc = rules.setdefault(rule, [ZERO, ZERO, 0, 0, 0])
            acc[0] += Decimal(str(a or 0))
            acc[1] += Decimal(str(c or 0))
            acc[2] += 1
            acc[3] += a is not None  # the rule applied in the live program
            acc[4] += c is not None  # ... in the candidate
        for b, (a, c) in diff.get("balances", {}).items():
            if b == "points":
                continue
            acc = balances.setdefault(b, [ZERO, ZERO])
            acc[0] += Decimal(str(a))
            acc[1] += Decimal(str(c))
        if "coupons" in diff:
            a, c = diff["coupons"]
            for code in set(a) | set(c):
                acc = coupons.setdefault(code, [0, 0])
                acc[0] += a.count(code)
                acc[1] += c.count(code)
        tiers += "tier" in diff
        messages += "messages" in diff
        rewards += "rewards" in diff
    ranked = sorted(members.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:top]
    per_rule = sorted(
        (
            {
                "rule": r,
                "live": a,
                "candidate": c,
                "delta": c - a,
                "events": n,
                "applied_live": x,
                "applied_candidate": y,
            }
            for r, (a, c, n, x, y) in rules.items()
        ),
        key=lambda d: (-abs(d["delta"]), -abs(d["applied_candidate"] - d["applied_live"]), d["rule"]),
    )
    return {
        "candidate": version,
        "candidate_name": name,
        "live": lives,
        "counts": counts,
        "points": {"live": live_total, "candidate": cand_total, "delta": cand_total - live_total},
        "balances": {b: {"live": a, "candidate": c, "delta": c - a} for b, (a, c) in balances.items()},
        "coupons": {code: {"live": a, "candidate": c} for code, (a, c) in sorted(coupons.items()) if a != c},
        "tier_differences": tiers,
        "message_differences": messages,
        "reward_differences": rewards,
        "top_members": [{"member": m, "delta": d} for m, d in ranked],
        "rules": per_rule,
        "errors": errors,
    }
