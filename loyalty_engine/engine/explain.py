"""Build effects with human-readable explanations from a compiled result."""

from __future__ import annotations

from decimal import Decimal

from ..language import ast
from .compiler import balance_quantum
from .effects import Effect
from .outcome import _HEAD, _PER_BALANCE, allocate, fmt, money, span_location


def reward_args(node: ast.Reward, values) -> dict:
    """A plugin reward's arguments by name, as the rule evaluated them (numbers as Decimal)."""
    return {
        arg.name: Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else value
        for (arg, _), value in zip(node.args, values)
    }


def reward_text(program, name: str, args: dict) -> str:
    """The explanation of a plugin reward: its type's ``describe(args)``, or its arguments."""
    spec = program.checked.schema.reward_types.get(name)
    if spec is not None and spec.describe is not None:
        try:
            return f"{spec.describe(args)} ({name}, plugin {spec.provider})"
        except Exception as exc:  # an explanation must never break evaluation
            return f"{name} reward ({', '.join(f'{k}: {fmt(v)}' for k, v in args.items())}; describe failed: {exc})"
    return f"{name} reward ({', '.join(f'{k}: {fmt(v)}' for k, v in args.items())})"


def source_text(program, node) -> str:
    span = getattr(node, "span", None)
    if span is None or span.line != span.end_line:
        return "?"
    line = program.sources.line(span.path, span.line)
    return line[span.column - 1 : span.end_column - 1] or "?"


def unit_word(unit: str, amount) -> str:
    singular = unit[:-1] if unit.endswith("s") else unit
    return singular if amount == 1 else (singular + "s" if not unit.endswith("s") else unit)


def per_balance_totals(outcome) -> dict[str, tuple]:
    """Per balance used by the outcome: (total, multiplier, earn, bonus, cut)."""
    raw = outcome.raw
    out = {}
    for i, b in enumerate(outcome.program.code.balances):
        base = _HEAD + i * _PER_BALANCE
        if raw[base] is not None:
            out[b] = raw[base : base + _PER_BALANCE]
    return out


def allocate_awards(outcome, per_balance=None) -> dict[tuple[int, int], Decimal]:
    """Each award's share of its balance's rounded total, keyed by (rule position, action index).

    The shares of a balance add up to its total before the cap's cut.
    """
    checked = outcome.program.checked
    records, fins = outcome.raw[1], outcome.raw[3] or {}
    if per_balance is None:
        per_balance = per_balance_totals(outcome)
    awards: dict[str, list] = {b: [] for b in per_balance}
    for p in outcome.plan.rules:
        record = records[p.position]
        if record is None:
            continue
        for a in p.actions:
            if a.kind in ("award_rate", "award_fixed") and a.balance in awards:
                awards[a.balance].append((p, a, record[a.index]))
    allocated: dict[tuple[int, int], Decimal] = {}
    for b, items in awards.items():
        total, mult, _earn, _bonus, cut = per_balance[b]
        quantum = balance_quantum(checked, b)
        free = [(p, a, v) for p, a, v in items if (p.position, a.index) not in fins]
        fixed_sum = sum((fins[(p.position, a.index)] for p, a, _ in items if (p.position, a.index) in fins), Decimal(0))
        values = [v * mult if a.kind == "award_rate" else v for p, a, v in free]
        shares = allocate(values, total + cut - fixed_sum, quantum)
        for (p, a, _), share in zip(free, shares):
            allocated[(p.position, a.index)] = share
        for p, a, _ in items:
            if (p.position, a.index) in fins:
                allocated[(p.position, a.index)] = fins[(p.position, a.index)]
    return allocated


def build_effects(outcome) -> list[Effect]:
    if outcome.raw is None:
        return []
    program = outcome.program
    checked = program.checked
    raw = outcome.raw
    records, settier, fins = raw[1], raw[2], raw[3] or {}
    per_balance = per_balance_totals(outcome)

    # multipliers in force per balance, for explanations
    factors: dict[str, list[str]] = {b: [] for b in per_balance}
    tier = outcome.context.member.tier
    tier_mults = program.tier_multipliers
    if "points" in per_balance and tier in tier_mults and outcome.plan.event_type != "trigger":
        factors["points"].append(f"{fmt(tier_mults[tier])} ({tier} tier)")
    for p in outcome.plan.rules:
        record = records[p.position]
        if record is None:
            continue
        for a in p.actions:
            if a.kind == "multiply" and a.balance in factors:
                factors[a.balance].append(f"{fmt(record[a.index])} ({p.rule.name})")

    allocated = allocate_awards(outcome, per_balance)

    effects: list[Effect] = []
    currency = checked.currency
    for p in outcome.plan.rules:
        record = records[p.position]
        if record is None:
            continue
        name = p.rule.name
        for a in p.actions:
            node = a.node
            where = span_location(node)
            if a.kind in ("award_rate", "award_fixed"):
                value = Decimal(record[a.index])
                points = allocated.get((p.position, a.index), Decimal(0))
                text = _award_text(program, node, a, value, points, factors.get(a.balance, []), currency)
                if (p.position, a.index) in fins and a.kind == "award_rate":
                    text += " (budgeted rule: rounded on its own)"
                budget_note = _budget_note(p, a, value, points, per_balance[a.balance][1], fins)
                effects.append(
                    Effect(
                        "award",
                        name,
                        text + budget_note,
                        where,
                        balance=a.balance,
                        points=points,
                        base=value,
                        node=node,
                    )
                )
            elif a.kind == "multiply":
                factor = Decimal(record[a.index])
                effects.append(
                    Effect(
                        "multiplier",
                        name,
                        f"x{fmt(factor)} on {a.balance} earned per amount",
                        where,
                        balance=a.balance,
                        factor=factor,
                    )
                )
            elif a.kind == "coupon":
                code = node.coupon.name
                template = checked.coupons.get(code)
                title = f" ({template.title})" if template is not None and template.title else ""
                effects.append(Effect("coupon", name, f"coupon {code} issued{title}", where, coupon=code))
            elif a.kind == "send":
                text = program.render(node.body, outcome)
                subject = program.render(node.subject, outcome) if node.subject is not None else None
                effects.append(
                    Effect(
                        "message",
                        name,
                        f"{node.channel.name} message: {text}",
                        where,
                        channel=node.channel.name,
                        text=text,
                        subject=subject,
                    )
                )
            elif a.kind == "set_tier":
                effects.append(Effect("tier", name, f"tier set to {node.tier.name}", where, tier=node.tier.name))
            elif a.kind == "reward":
                args = reward_args(node, record[a.index])
                effects.append(
                    Effect(
                        "reward",
                        name,
                        reward_text(program, node.reward_type.name, args),
                        where,
                        reward=node.reward_type.name,
                        args=args,
                    )
                )
    for b, (total, _mult, _earn, _bonus, cut) in per_balance.items():
        if cut:
            cap_rules = [
                (p, a)
                for p in outcome.plan.rules
                if records[p.position] is not None
                for a in p.actions
                if a.kind == "cap" and a.balance == b
            ]
            rule = cap_rules[-1][0].rule.name if cap_rules else None
            where = span_location(cap_rules[-1][1].node) if cap_rules else None
            effects.append(
                Effect(
                    "cap",
                    rule,
                    f"{b} capped at {fmt(total)}: {fmt(total + cut)} earned, {fmt(cut)} over the cap",
                    where,
                    balance=b,
                    points=-cut,
                )
            )
    upgrade = tier_upgrade(outcome, settier)
    if upgrade is not None:
        effects.append(upgrade)
    return effects


def _award_text(program, node: ast.Award, a, value, points, factors, currency) -> str:
    unit = a.balance
    if node.rate is None:
        text = f"{fmt(value)} {unit_word(unit, value)} bonus"
        return text if points == value else f"{text} (counted as {fmt(points)})"
    amount = source_text(program, node.amount)
    count = node.amount.value if isinstance(node.amount, ast.Literal) else 2
    if node.rate == "money":
        src = _source_description(program, node)
        text = f"{amount} {unit_word(unit, count)} per {fmt(node.per)} {currency} of {src}"
        if isinstance(node.amount, ast.Literal) and node.amount.value and (node.up_to is None or value < node.up_to):
            spent = value * node.per / node.amount.value
            text += f" ({money(spent)} {currency})"
    elif node.rate == "item":
        filt = f" where {source_text(program, node.items_filter)}" if node.items_filter else ""
        text = f"{amount} {unit_word(unit, count)} per item{filt}"
    else:
        src = _source_description(program, node)
        text = f"{amount} of {src}"
    if node.up_to is not None and value >= node.up_to:
        text += f" (limited to {node.up_to})"
    if factors:
        return f"{text} = {fmt(value)} x " + " x ".join(factors) + f" = {fmt(points)} {unit}"
    if points != value:
        return f"{text} = {fmt(value)}, rounded to {fmt(points)} {unit}"
    return f"{text} = {fmt(points)} {unit}"


def _source_description(program, node: ast.Award) -> str:
    """What a rate award earns on, as the rule file says it: net_amount, items where ..."""
    if node.items_filter is not None:
        return "items where " + source_text(program, node.items_filter)
    return "items" if node.items_source else source_text(program, node.source)


def _budget_note(p, a, value, points, mult, fins) -> str:
    if (p.position, a.index) not in fins:
        return ""
    wanted = value * mult if a.kind == "award_rate" else value
    if points < wanted.to_integral_value():
        return f"; budget left allowed only {fmt(points)}"
    return ""


def tier_upgrade(outcome, settier) -> Effect | None:
    program = outcome.program
    tiers = program.checked.tiers
    if tiers is None or settier is not None or outcome.event is None:
        return None
    event = outcome.event
    metric = tiers.metric.name
    contribution = Decimal(0)
    if metric == "spend" and event.type in ("purchase", "refund"):
        contribution = event.net_amount if event.type == "purchase" else -event.net_amount
    elif (
        metric == "visits" and event.type in ("purchase", "visit") or metric == "purchases" and event.type == "purchase"
    ):
        contribution = Decimal(1)
    elif metric == "nights":
        contribution = Decimal(str(event.attributes.get("nights", 0) or 0))
    elif metric == "points_earned":
        contribution = Decimal(outcome.points)
    if contribution <= 0:
        return None
    key = f"{metric}:{tiers.window.key}"
    before = Decimal(outcome.context.stats.get(key, 0))
    after = before + contribution
    names = [lvl.name.name for lvl in tiers.levels]
    current = outcome.context.member.tier
    rank = names.index(current) if current in names else -1
    reached = None
    for i, level in enumerate(tiers.levels):
        if after >= level.threshold:
            reached = (i, level)
    if reached is None or reached[0] <= rank:
        return None
    level = reached[1]
    return Effect(
        "tier",
        None,
        f"upgrade to {level.name.name}: {metric} over {tiers.window.describe()} {fmt(after)} >= {fmt(level.threshold)}",
        span_location(level),
        tier=level.name.name,
    )
