"""Applying an evaluated outcome to the store: ledger entries, coupons, messages, tier, statistics.

Runs inside the event's write transaction; anything raised here rolls the
whole event back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from decimal import Decimal

from ..engine.compiler import balance_quantum
from ..engine.explain import allocate_awards, award_actions, reward_args, tier_upgrade
from ..engine.outcome import Outcome, allocate, span_location
from ..language import ast
from ..model import Event
from ..program import Program
from ..store.base import CouponRecord, LedgerEntry, MemberRecord, Message
from .history import iter_nodes, shift
from .ledger import Ledger
from .rewards import RewardContext, journal, run_apply

ZERO = Decimal(0)
ONE = Decimal(1)
VISIT_TYPES = ("purchase", "visit")
EFFECT_KINDS = frozenset({"coupon", "send", "set_tier", "reward"})


class _State:
    """What one outcome's effects have decided so far (coupon/message counter, notes, chosen tier)."""

    __slots__ = ("notes", "counter", "chosen_tier")

    def __init__(self, notes: list[str]):
        self.notes = notes
        self.counter = 0
        self.chosen_tier: tuple[str, str] | None = None


def short_code(*parts: str) -> str:
    """A stable 8-character code from ``parts`` (coupon codes are the same on every replay)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return base64.b32encode(digest[:5]).decode()


class Applier:
    def __init__(self, program: Program, store, ledger: Ledger, tz):
        self.program = program
        self.store = store
        self.ledger = ledger
        self.tz = tz
        self.plans = {}
        self.types = program.checked.schema.reward_types  # every effect's reward type, built-ins included
        self.state = _State([])
        self._filters: dict[int, ast.Expr | None] = {}
        for plan in program.code.events.values():
            for rp in plan.rules:
                self.plans[rp.rule.name] = rp
        if program.code.triggers is not None:
            for rp in program.code.triggers.rules:
                self.plans[rp.rule.name] = rp

    # -------------------------------------------------------------- the whole outcome

    def apply(self, record: MemberRecord, outcome: Outcome, source: str, at: dt.datetime, event: Event | None):
        """Write what ``outcome`` decided; returns (entries, coupons, tier, messages, notes).

        Works from the compiled result directly (no explanation texts are built).
        Every effect goes through its registered reward type (``self.types``).
        """
        entries: list[LedgerEntry] = []
        coupons: list[str] = []
        notes: list[str] = []
        if outcome.raw is None:
            return entries, coupons, None, 0, notes
        self.state = state = _State(notes)
        ctx = RewardContext(self, record, event, at, source)
        types = self.types
        records = outcome.raw[1]
        awarded: dict[str, dict[str, Decimal]] = {}  # rule -> balance/"coupons" -> amount, for budgets
        points = types["points"]
        with self.ledger.grouped():  # the awards' entries and lots are written in one statement each
            for balance, amounts in self._ledger_amounts(outcome).items():
                for plan, action, amount in amounts:
                    lines = self.line_weights(action.node, outcome) if event is not None else None
                    rule = plan.rule.name
                    ctx.rule, ctx.location = rule, None
                    ctx.args = {"balance": balance, "amount": amount, "lines": lines}
                    entries += run_apply(points, ctx)
                    per = awarded.setdefault(rule, {})
                    per[balance] = per.get(balance, ZERO) + amount
        messages = 0
        for plan in outcome.plan.rules:
            record_values = records[plan.position]
            if record_values is None:
                continue
            rule = plan.rule.name
            for action in plan.actions:
                kind = action.kind
                if kind not in EFFECT_KINDS:
                    continue
                node = action.node
                ctx.rule, ctx.location = rule, None
                if kind == "coupon":
                    ctx.args = {"coupon": node.coupon.name}
                    code = run_apply(types["coupon"], ctx)
                    if code:
                        coupons.append(code)
                        per = awarded.setdefault(rule, {})
                        per["coupons"] = per.get("coupons", ZERO) + ONE
                elif kind == "send":
                    text = self.program.render(node.body, outcome)
                    subject = self.program.render(node.subject, outcome) if node.subject is not None else None
                    ctx.args = {"channel": node.channel.name, "text": text, "subject": subject}
                    messages += 1 if run_apply(types["message"], ctx) else 0
                elif kind == "set_tier":
                    ctx.args = {"tier": node.tier.name}
                    run_apply(types["tier"], ctx)
                else:  # a plugin's reward type
                    reward = types[node.reward_type.name]
                    ctx.location = span_location(node)
                    ctx.reward_type = reward
                    ctx.args = reward_args(node, record_values[action.index])
                    granted = run_apply(reward, ctx)
                    lines = self.reward_lines(node, outcome) if event is not None else None
                    journal(ctx, reward, granted, lines)
                    ctx.reward_type = None
        chosen = state.chosen_tier
        if chosen is None and outcome.event is not None:
            upgrade = tier_upgrade(outcome, outcome.raw[2])
            if upgrade is not None:
                chosen = (upgrade.tier, upgrade.explanation)
        tier = None
        if chosen is not None and chosen[0] != record.member.tier:
            tier = chosen[0]
            self.change_tier(record, tier, at, chosen[1], source)
        self._record_limits_and_budgets(record, outcome, awarded, at, source)
        return entries, coupons, tier, messages, notes

    def _ledger_amounts(self, outcome: Outcome) -> dict[str, list]:
        """Awards per balance as (rule plan, action, amount); a cap's cut is spread so entries add up to the total."""
        shares = allocate_awards(outcome)
        out: dict[str, list] = {}
        records = outcome.raw[1]
        for plan, action in award_actions(outcome.plan):  # only awards have shares
            if records[plan.position] is None:
                continue
            share = shares.get((plan.position, action.index))
            if share:
                out.setdefault(action.balance, []).append((plan, action, share))
        for balance, items in out.items():
            total = outcome.total(balance)
            if sum((a for _, _, a in items), ZERO) != total and all(a > 0 for _, _, a in items):
                quantum = balance_quantum(self.program.checked, balance)
                subtotal = sum((a for _, _, a in items), ZERO)  # a cap's cut in proportion, never below zero
                spread = allocate([a * total / subtotal for _, _, a in items], total, quantum)
                out[balance] = [(p, a, s) for (p, a, _), s in zip(items, spread)]
        return out

    # -------------------------------------------------------------- which lines an award came from

    def line_weights(self, node: ast.Award | None, outcome: Outcome) -> tuple[Decimal, ...] | None:
        """Per cart line, the weight an award was earned on (None: a fixed bonus, not line-based)."""
        event = outcome.event
        if node is None or node.rate is None or event is None:
            return None
        if not event.items:
            return ()  # earned on the whole basket: returned by amount
        condition = self._line_filter(node)
        if condition is not None:
            matches = self.program.item_matches(condition, outcome)
        else:
            matches = (True,) * len(event.items)
        if node.rate == "item":
            weights = tuple(item.quantity if m else ZERO for item, m in zip(event.items, matches))
        else:
            weights = tuple(item.amount if m else ZERO for item, m in zip(event.items, matches))
        return weights if any(weights) else None

    def reward_lines(self, node: ast.Reward, outcome: Outcome) -> tuple[Decimal, ...] | None:
        """Per cart line, the weight a plugin reward was earned on: the lines of its one item sum, else None."""
        key = id(node)
        if key not in self._filters:
            sums = [n for _, value in node.args for n in iter_nodes(value) if isinstance(n, ast.SumItems)]
            self._filters[key] = sums[0].condition if len(sums) == 1 else None
        condition = self._filters[key]
        event = outcome.event
        if condition is None or not event.items:
            return None
        matches = self.program.item_matches(condition, outcome)
        weights = tuple(item.amount if m else ZERO for item, m in zip(event.items, matches))
        return weights if any(weights) else None

    def _line_filter(self, node: ast.Award):
        """The item condition an award's amount depends on (cached per award)."""
        key = id(node)
        if key not in self._filters:
            condition = node.items_filter
            if condition is None and node.source is not None and not node.items_source:
                sums = [n for n in iter_nodes(node.source) if isinstance(n, ast.SumItems)]
                if len(sums) == 1:
                    condition = sums[0].condition
            self._filters[key] = condition
        return self._filters[key]

    # -------------------------------------------------------------- coupons, messages, tiers

    def issue_coupon(self, record, template_code, source, rule, at, n, notes) -> str | None:
        template = self.program.checked.coupons.get(template_code)
        member_id = record.member.id
        if template is None:
            notes.append(f"coupon {template_code} is not defined by this program")
            return None
        if template.per_member is not None and self.store.coupon_count(template_code, member_id) >= template.per_member:
            notes.append(f"coupon {template_code} not issued: limit {template.per_member} per member reached")
            return None
        if template.total is not None and self.store.coupon_count(template_code) >= template.total:
            notes.append(f"coupon {template_code} not issued: limit {template.total} in total reached")
            return None
        day = at.astimezone(self.tz).date()
        if template.valid_days is not None:
            valid_until = day + dt.timedelta(days=template.valid_days - 1)
        else:
            valid_until = template.valid_until
        code = f"{template_code}-{short_code(source, rule or '', str(n))}"
        salt = 0
        # 40 bits collide now and then at scale: add_coupon refuses a code that is taken, and the next one is tried
        while not self.store.add_coupon(
            CouponRecord(code, template_code, member_id, "issued", at, valid_until, source, rule, self.program.version)
        ):
            salt += 1
            code = f"{template_code}-{short_code(source, rule or '', str(n), str(salt))}"
        return code

    def queue_text(self, record, channel: str, text: str, subject, rule, source, at, n) -> bool:
        member = record.member
        spec = self.program.checked.schema.channels.get(channel)
        field_name = spec.address if spec is not None else None
        address = getattr(member, field_name, None) if field_name else None
        message = Message(f"{source}:{n}", member.id, channel, text, rule or source, at, subject, address)
        return bool(self.store.add_message(message))

    def change_tier(self, record: MemberRecord, tier: str, at: dt.datetime, reason: str, source: str | None) -> None:
        before = record.member.tier
        day = at.astimezone(self.tz).date()
        record.member = _with_tier(record.member, tier)
        record.tier_since = day
        record.grace_until = None
        review = self.program.checked.tiers.review if self.program.checked.tiers else None
        record.tier_review = shift(day, review.every_months, "month") if review else None
        self.store.add_tier_change(record.member.id, before, tier, at, reason, source)

    # -------------------------------------------------------------- limits and budgets

    def _record_limits_and_budgets(self, record, outcome: Outcome, awarded, at, source) -> None:
        records = outcome.raw[1]
        for plan in outcome.plan.rules:
            if records[plan.position] is None:
                continue
            name = plan.rule.name
            is_trigger = isinstance(plan.rule, ast.Trigger)
            if plan.rule.limits or is_trigger:  # triggers always, so reports can count them
                self.store.add_firing(record.member.id, ("trigger:" if is_trigger else "rule:") + name, at, source)
            for key, _amount, unit in plan.budgets:
                used = awarded.get(name, {}).get(unit, ZERO)
                if used:
                    self.store.add_budget(key, used)

    # -------------------------------------------------------------- statistics

    def record_activity(self, record: MemberRecord, event: Event, points: Decimal) -> None:
        """Statistics of one event: per local day (for windows) and lifetime (on the member)."""
        day = event.at.astimezone(self.tz).date()
        stats: dict[str, Decimal] = {}
        if event.type == "purchase":
            stats["spend"] = event.net_amount
            stats["purchases"] = ONE
        if event.type in VISIT_TYPES:
            stats["visits"] = ONE
        nights = event.attributes.get("nights")
        if nights is not None:
            stats["nights"] = Decimal(str(nights))
        if points > 0:
            stats["points_earned"] = points
        self.add_stats(record, day, event.id, stats, event.at)
        if event.type == "purchase":
            if record.first_purchase is None or event.at < record.first_purchase:
                record.first_purchase = event.at
            if record.last_purchase is None or event.at > record.last_purchase:
                record.last_purchase = event.at

    def add_stats(self, record, day, source, stats: dict[str, Decimal], at: dt.datetime | None) -> None:
        stats = {k: v for k, v in stats.items() if v}
        if not stats:
            return
        self.store.add_activity(record.member.id, day, source, stats)
        for name, value in stats.items():
            record.lifetime[name] = record.lifetime.get(name, ZERO) + value
        if at is not None and (record.last_activity is None or at > record.last_activity):
            record.last_activity = at


def _with_tier(member, tier):
    import attrs

    return attrs.evolve(member, tier=tier)
