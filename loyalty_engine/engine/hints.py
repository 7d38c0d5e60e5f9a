"""Near-miss hints: rules that would apply if the basket grew a little."""

from __future__ import annotations

from decimal import Decimal

from ..language import ast
from ..language import types as T
from ..language.checker import flatten_and
from . import runtime
from .explain import source_text
from .outcome import fmt, money

_GROWS = {">=", ">"}
_MIRROR = {"<=": ">=", "<": ">"}


def _basket_side(program, node) -> str | None:
    """'money' or 'count' when ``node`` grows as the customer adds to the basket."""
    if isinstance(node, ast.Path):
        b = program.checked.bindings.get(id(node))
        if b is not None and b.kind == "event" and b.key in ("amount", "net_amount"):
            return "money"
    if isinstance(node, ast.CountItems):
        return "count"
    if isinstance(node, ast.SumItems) and program.checked.type_of(node) == T.MONEY:
        return "money"
    return None


def _threshold(program, conjunct):
    """(basket node, other node, op as seen from the basket side) or None."""
    if isinstance(conjunct, ast.ItemTest) and conjunct.quantifier == "any":
        return ("any", conjunct, None)
    if not isinstance(conjunct, ast.Binary):
        return None
    if conjunct.op in _GROWS and _basket_side(program, conjunct.left):
        return (conjunct.left, conjunct.right, conjunct.op)
    if conjunct.op in _MIRROR and _basket_side(program, conjunct.right):
        return (conjunct.right, conjunct.left, _MIRROR[conjunct.op])
    return None


def summary(program, rule) -> str:
    parts = []
    for action in rule.actions:
        if isinstance(action, ast.Award):
            amount = source_text(program, action.amount)
            unit = action.unit.name
            if action.rate is None:
                parts.append(f"{amount} {unit}")
            elif action.rate == "money":
                parts.append(f"{amount} {unit} per {fmt(action.per)} {program.checked.currency}")
            elif action.rate == "item":
                parts.append(f"{amount} {unit} per item")
            else:
                parts.append(f"{amount} {unit}")
        elif isinstance(action, ast.Multiply):
            parts.append(f"{source_text(program, action.factor)}x {action.unit.name}")
        elif isinstance(action, ast.IssueCoupon):
            parts.append(f"coupon {action.coupon.name}")
        elif isinstance(action, ast.SetTier):
            parts.append(f"{action.tier.name} tier")
        elif isinstance(action, ast.Reward):
            parts.append(f"a {action.reward_type.name} reward")
    return " and ".join(parts) or "this offer"


def _item_noun(program, condition, n) -> str:
    plural = "s" if n != 1 else ""
    if (
        isinstance(condition, ast.Binary)
        and condition.op == "=="
        and isinstance(condition.right, ast.Literal)
        and condition.right.kind == "text"
    ):
        return f"{condition.right.value} item{plural}"
    if condition is None:
        return f"item{plural}"
    return f"item{plural} where {source_text(program, condition)}"


def near_misses(outcome) -> list[str]:
    if outcome.raw is None or outcome.event is None:
        return []
    program = outcome.program
    records = outcome.raw[1]
    fired_groups = {p.group for p in outcome.plan.rules if p.group and records[p.position] is not None}
    hints = []
    for p in outcome.plan.rules:
        rule = p.rule
        if records[p.position] is not None or rule.condition is None or p.group in fired_groups:
            continue
        if not program.rule_could_apply(p, outcome):
            continue
        conjuncts = flatten_and(rule.condition)
        values = program.probe(p, outcome)
        failing = [i for i, v in enumerate(values) if not v[0]]
        if len(failing) != 1:
            continue
        conjunct = conjuncts[failing[0]]
        shape = _threshold(program, conjunct)
        if shape is None:
            continue
        what = summary(program, rule)
        if shape[0] == "any":
            noun = _item_noun(program, conjunct.condition, 1)
            hints.append(f"add 1 {noun} to get {what} (rule '{rule.name}')")
            continue
        basket, _other, op = shape
        _, have, need = values[failing[0]]
        if have is None or need is None:
            continue
        kind = _basket_side(program, basket)
        gap = Decimal(need) - Decimal(have)
        if kind == "money":
            if op == ">":
                gap += runtime.CENT
            if gap <= 0:
                continue
            hints.append(f"spend {money(gap)} {program.checked.currency} more to get {what} (rule '{rule.name}')")
        else:
            if op == ">":
                gap = gap.to_integral_value() + 1 if gap == gap.to_integral_value() else gap
            n = int(gap.to_integral_value(rounding="ROUND_CEILING"))
            if n <= 0:
                continue
            noun = _item_noun(program, basket.condition, n)
            hints.append(f"add {n} more {noun} to get {what} (rule '{rule.name}')")
    return hints
