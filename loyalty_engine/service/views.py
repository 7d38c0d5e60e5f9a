"""A member as the till, the app or support sees them: balances, pending and expiring points, tier, coupons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from attrs import field, frozen

from ..engine.effects import json_number
from ..errors import RefusedError
from ..model import Member
from ..store.base import CouponRecord, LedgerEntry
from .history import lot_expiry

ZERO = Decimal(0)


@frozen
class BalanceView:
    name: str
    total: Decimal  # the sum of the ledger entries
    available: Decimal  # what can be spent today
    pending: tuple[tuple[dt.date, Decimal], ...]  # (release day, amount)
    debt: Decimal
    lots: tuple[tuple[dt.date, Decimal, dt.date | None], ...]  # (earned, remaining, expires on)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": json_number(self.total),
            "available": json_number(self.available),
            "pending": [{"releases_on": d.isoformat(), "amount": json_number(a)} for d, a in self.pending],
            "debt": json_number(self.debt),
            "lots": [
                {"earned_on": e.isoformat(), "remaining": json_number(r), "expires_on": x.isoformat() if x else None}
                for e, r, x in self.lots
            ],
        }


@frozen
class TierView:
    name: str | None
    since: dt.date | None
    review: dt.date | None
    grace_until: dt.date | None
    metric: str
    window: str
    value: Decimal
    next_tier: str | None
    needed: Decimal | None  # how much more of the metric reaches the next tier

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "since": self.since.isoformat() if self.since else None,
            "review": self.review.isoformat() if self.review else None,
            "grace_until": self.grace_until.isoformat() if self.grace_until else None,
            "metric": self.metric,
            "window": self.window,
            "value": json_number(self.value),
            "next_tier": self.next_tier,
            "needed": None if self.needed is None else json_number(self.needed),
        }


@frozen
class MemberView:
    member: Member
    balances: dict[str, BalanceView]
    tier: TierView | None
    coupons: list[CouponRecord]
    history: list[LedgerEntry]
    tier_history: list[dict[str, Any]]
    lifetime: dict[str, Decimal]
    last_purchase: dt.datetime | None
    rewards: dict[str, dict[str, Decimal]] = field(
        factory=dict
    )  # plugin reward type -> unit ("" when none) -> journalled total

    def to_dict(self) -> dict[str, Any]:
        m = self.member
        return {
            "member": {
                "id": m.id,
                "name": m.name,
                "joined": m.joined.isoformat() if m.joined else None,
                "birthday": m.birthday.isoformat() if m.birthday else None,
                "tier": m.tier,
            },
            "balances": {k: v.to_dict() for k, v in self.balances.items()},
            "tier": self.tier.to_dict() if self.tier else None,
            "coupons": [
                {
                    "code": c.code,
                    "template": c.template,
                    "status": c.status,
                    "issued_at": c.issued_at.isoformat(),
                    "valid_until": c.valid_until.isoformat() if c.valid_until else None,
                }
                for c in self.coupons
            ],
            "history": [
                {
                    "at": e.at.isoformat(),
                    "balance": e.balance,
                    "kind": e.kind,
                    "amount": json_number(e.amount),
                    "rule": e.rule,
                    "event": e.event,
                    "reason": e.reason,
                }
                for e in self.history
            ],
            "tier_history": self.tier_history,
            "lifetime": {k: json_number(v) for k, v in self.lifetime.items()},
            "last_purchase": self.last_purchase.isoformat() if self.last_purchase else None,
            "rewards": {r: {u: json_number(v) for u, v in units.items()} for r, units in self.rewards.items()},
        }


def member_view(engine, member_id: str, at: dt.datetime, history: int = 20) -> MemberView:
    store = engine.store
    record = store.load_member(member_id)
    if record is None:
        raise RefusedError("unknown_member", f"member '{member_id}' is not known")
    day = engine.local_day(at)
    balances = {}
    for name in engine.program.checked.balances:
        lots = store.open_lots(member_id, name)
        available, _ = engine.ledger.available(record, name, day)  # what redeem_points would let them spend
        pending = tuple(
            sorted((lot.releases_on, lot.remaining) for lot in lots if lot.releases_on and lot.releases_on > day)
        )
        rows = tuple(
            sorted(
                ((lot.earned_on, lot.remaining, lot_expiry(engine.program, record, lot)) for lot in lots),
                key=_by_expiry,
            )
        )
        balances[name] = BalanceView(
            name, record.balances.get(name, ZERO), available, pending, record.debts.get(name, ZERO), rows
        )
    return MemberView(
        record.member,
        balances,
        _tier(engine, record, day),
        store.coupons(member_id),
        store.ledger(member_id, history),
        store.tier_history(member_id),
        dict(record.lifetime),
        record.last_purchase,
        _rewards(store.reward_totals(member_id)),
    )


def _rewards(totals) -> dict[str, dict[str, Decimal]]:
    out: dict[str, dict[str, Decimal]] = {}
    for (reward, unit), amount in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        out.setdefault(reward, {})[unit or ""] = amount
    return out


def _by_expiry(row):
    return (row[2] or dt.date.max, row[0])


def _tier(engine, record, day) -> TierView | None:
    from .schedule import qualified_level

    tiers = engine.program.checked.tiers
    if tiers is None:
        return None
    _, _, value = qualified_level(engine, record, day)
    names = [lvl.name.name for lvl in tiers.levels]
    current = names.index(record.member.tier) if record.member.tier in names else -1
    upper = tiers.levels[current + 1] if current + 1 < len(tiers.levels) else None
    return TierView(
        record.member.tier,
        record.tier_since,
        record.tier_review,
        record.grace_until,
        tiers.metric.name,
        tiers.window.describe(),
        value,
        upper.name.name if upper else None,
        max(ZERO, upper.threshold - value) if upper else None,
    )
