"""Why an event earned what it earned: every rule in evaluation order, and how each balance was computed.

``program.explain(event, context)`` returns a :class:`Trace` (and
``program.explain_triggers(context, as_of)`` one for the daily trigger run):

- ``trace.rules``: one :class:`RuleTrace` per rule for the event's type, in
  evaluation order (priority, then file order). ``status`` is ``applied`` or
  the first thing that stopped the rule: ``not_in_dates`` (its ``valid`` or
  campaign dates), ``condition_false``, ``group_taken`` (a ``pick first``
  group already applied a rule), ``limit_reached``, ``budget_spent`` or
  ``lost_in_group`` (a ``pick best`` group chose another rule); a trigger on
  another weekday or day of the month is ``not_scheduled``. ``reason``
  says it in a sentence; ``conditions`` lists each part of the ``when``
  (split at ``and``) with its value and, for comparisons, both sides' values
  (``net_amount 87.50 >= 100: false``); ``effects`` are the rule's effects.
- ``trace.balances``: one :class:`BalanceTrace` per balance the event moved,
  with the calculation as ``steps``: rate awards, multipliers, fixed awards,
  rounding, cap.
- ``trace.to_dict()`` is the JSON of ``loyalty explain --json``; ``trace.render()``
  its text.

It is built from the same compiled evaluation as :class:`~.outcome.Outcome`
(the outcome is ``trace.outcome``): nothing is evaluated twice in another way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from attrs import field, frozen

from ..language import ast
from ..language import types as T
from ..language.checker import flatten_and
from . import runtime
from .effects import Effect, json_number
from .explain import per_balance_totals
from .outcome import Outcome, fmt, span_location

OPS = {"notin": "not in"}
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in", "notin")
STATUSES = (
    "applied",
    "not_in_dates",
    "condition_false",
    "group_taken",
    "limit_reached",
    "budget_spent",
    "lost_in_group",
)


@frozen
class Condition:
    """One part of a rule's ``when``: its text, whether it held, and for a comparison both sides' values."""

    text: str
    passed: bool
    op: str | None = None
    left: str | None = None  # source text of each side
    left_value: Any = None
    right: str | None = None
    right_value: Any = None
    money: tuple[bool, bool] = (False, False)  # whether each side is an amount of money (shown with 2 decimals)

    def describe(self) -> str:
        """``net_amount 87.50 >= 100: false``: each side that is not a plain value shows its value."""
        if self.op is None:
            return f"{self.text}: {_yes(self.passed)}"
        left = _side(self.left, self.left_value, self.money[0])
        right = _side(self.right, self.right_value, self.money[1])
        return f"{left} {OPS.get(self.op, self.op)} {right}: {_yes(self.passed)}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "passed": self.passed}
        if self.op is not None:
            out.update(
                op=OPS.get(self.op, self.op),
                left=self.left,
                left_value=_jsonable(self.left_value),
                right=self.right,
                right_value=_jsonable(self.right_value),
            )
        out["explanation"] = self.describe()
        return out


@frozen
class RuleTrace:
    name: str
    location: str | None
    priority: int
    status: str
    reason: str
    conditions: tuple[Condition, ...] = ()
    effects: tuple[Effect, ...] = ()
    group: str | None = None
    campaign: str | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "location": self.location,
            "priority": self.priority,
            "group": self.group,
            "campaign": self.campaign,
            "applied": self.applied,
            "status": self.status,
            "reason": self.reason,
            "conditions": [c.to_dict() for c in self.conditions],
            "effects": [e.to_dict() for e in self.effects],
        }


@frozen
class BalanceTrace:
    """How one balance's change was computed, step by step."""

    balance: str
    rate_awards: Decimal  # sum of per-amount, per-item and percentage awards, before multipliers
    multiplier: Decimal
    multipliers: tuple[str, ...]  # e.g. "1.25 (silver tier)", "2 (Tuesday double)"
    fixed_awards: Decimal
    before_rounding: Decimal
    rounding: str
    rounded: Decimal
    cut: Decimal  # taken off by a cap
    total: Decimal
    steps: tuple[str, ...] = field(factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "balance": self.balance,
            "rate_awards": json_number(self.rate_awards),
            "multiplier": json_number(self.multiplier),
            "multipliers": list(self.multipliers),
            "fixed_awards": json_number(self.fixed_awards),
            "before_rounding": json_number(self.before_rounding),
            "rounding": self.rounding,
            "rounded": json_number(self.rounded),
            "cap_cut": json_number(self.cut),
            "total": json_number(self.total),
            "steps": list(self.steps),
        }


@frozen
class Trace:
    program: str
    event: str | None
    event_type: str
    member: str
    tier: str | None
    day: dt.date
    rules: tuple[RuleTrace, ...]
    balances: tuple[BalanceTrace, ...]
    coupons: tuple[str, ...]
    effects: tuple[Effect, ...]  # every effect, as Outcome.effects (tier upgrades included)
    hints: tuple[str, ...]
    outcome: Outcome = field(eq=False, repr=False)

    @property
    def points(self) -> int:
        return self.outcome.points

    def rule(self, name: str) -> RuleTrace:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "event": self.event,
            "type": self.event_type,
            "member": self.member,
            "tier": self.tier,
            "day": self.day.isoformat(),
            "points": self.points,
            "totals": {b.balance: json_number(b.total) for b in self.balances},
            "rules": [r.to_dict() for r in self.rules],
            "balances": [b.to_dict() for b in self.balances],
            "coupons": list(self.coupons),
            "other_effects": [e.to_dict() for e in self.effects if e.rule is None],
            "hints": list(self.hints),
        }

    def render(self) -> str:
        what = f"{self.event_type} {self.event}" if self.event is not None else "daily trigger run"
        out = [
            f"{self.program}: {what} for {self.member} (tier {self.tier or 'none'}) on {self.day.isoformat()}",
            "",
            "rules, in evaluation order:",
        ]
        for r in self.rules:
            mark = "applied" if r.applied else "no"
            where = f"  ({r.location})" if r.location else ""
            out.append(f"  {mark:<7}  {r.name}{where}")
            if r.status == "condition_false":
                out.append("           condition false:")
            elif not r.applied:
                out.append(f"           {r.reason}")
            for c in r.conditions:
                out.append(f"           - {c.describe()}")
            for e in r.effects:
                out.append(f"           = {e.explanation}")
        for e in self.effects:
            if e.rule is None:
                out.append(f"  {'':<7}  {e.explanation}")
        for b in self.balances:
            out.append("")
            out.append(f"{b.balance}:")
            out += [f"  {step}" for step in b.steps]
        if self.coupons:
            out.append("")
            out.append("coupons: " + ", ".join(self.coupons))
        if self.hints:
            out.append("")
            out += [f"hint: {h}" for h in self.hints]
        return "\n".join(out)


# ------------------------------------------------------------------ building


def build_trace(outcome: Outcome) -> Trace:
    program = outcome.program
    tz = program._compiler.tz
    when = outcome.as_of or (outcome.event.at if outcome.event is not None else None)
    day = when.astimezone(tz).date()
    effects = outcome.effects
    rules: list[RuleTrace] = []
    if outcome.plan is not None:
        records = outcome.raw[1]
        taken_groups: dict[str, str] = {}
        for plan in outcome.plan.rules:
            rules.append(_rule_trace(outcome, plan, records, day, taken_groups, effects))
            if records[plan.position] is not None and plan.group:
                taken_groups.setdefault(plan.group, plan.rule.name)
    balances = (
        tuple(_balance_trace(outcome, b, values) for b, values in per_balance_totals(outcome).items())
        if (outcome.raw is not None)
        else ()
    )
    event = outcome.event
    return Trace(
        program.name,
        event.id if event is not None else None,
        event.type if event is not None else "trigger",
        outcome.context.member.id,
        outcome.context.member.tier,
        day,
        tuple(rules),
        balances,
        tuple(outcome.coupons),
        tuple(effects),
        tuple(outcome.hints),
        outcome,
    )


def _rule_trace(outcome, plan, records, day, taken_groups, effects) -> RuleTrace:
    program = outcome.program
    rule = plan.rule
    conditions = tuple(_conditions(outcome, plan)) if rule.condition is not None else ()
    common = {
        "name": rule.name,
        "location": span_location(rule),
        "priority": getattr(rule, "priority", 0),
        "group": plan.group,
        "campaign": getattr(rule, "campaign", None),
        "conditions": conditions,
    }
    if records[plan.position] is not None:
        mine = tuple(e for e in effects if e.rule == rule.name)
        return RuleTrace(status="applied", reason="applied", effects=mine, **common)
    if (plan.valid_from and day < plan.valid_from) or (plan.valid_to and day > plan.valid_to):
        window = _window(plan)
        what = f"the dates of campaign '{rule.campaign}'" if getattr(rule, "campaign", None) else "the rule's dates"
        return RuleTrace(status="not_in_dates", reason=f"{day.isoformat()} is outside {what} ({window})", **common)
    if isinstance(rule, ast.Trigger) and not _scheduled(rule, day):
        when = (
            f"{rule.schedule} on {rule.schedule_arg.name}s"
            if rule.schedule == "weekly"
            else (f"monthly on day {int(rule.schedule_arg)}")
        )
        return RuleTrace(status="not_scheduled", reason=f"runs {when}; {day.isoformat()} is not one", **common)
    if plan.pick == "first" and plan.group in taken_groups:
        reason = f"group '{plan.group}' picks the first rule that applies: '{taken_groups[plan.group]}' came first"
        return RuleTrace(status="group_taken", reason=reason, **common)
    failed = [c for c in conditions if not c.passed]
    if failed:
        reason = "condition false: " + "; ".join(c.describe() for c in failed)
        return RuleTrace(status="condition_false", reason=reason, **common)
    key = ("trigger:" if isinstance(rule, ast.Trigger) else "rule:") + rule.name
    ctx = outcome.context
    tz = program._compiler.tz
    for limit in rule.limits:
        if not runtime.limit_ok(ctx, key, day, tz, limit.times, limit.period, limit.days):
            used = len(ctx.history.get(key, ()))
            reason = f"limit {limit.describe()} reached (fired {used} time{'s' if used != 1 else ''} before)"
            return RuleTrace(status="limit_reached", reason=reason, **common)
    for budget_key, amount, unit in plan.budgets:
        need = 1 if unit == "coupons" else Decimal("0.0001")
        if runtime.budget_left(ctx, budget_key, amount) < need:
            owner = budget_key.split(":", 1)[1]
            kind = "campaign" if budget_key.startswith("campaign:") else "rule"
            reason = f"the budget of {_num(amount)} {unit} of {kind} '{owner}' is used up"
            return RuleTrace(status="budget_spent", reason=reason, **common)
    if plan.pick == "best":
        winner = next(
            (p.rule.name for p in outcome.plan.rules if p.group == plan.group and records[p.position] is not None), None
        )
        reason = f"group '{plan.group}' picks the best offer" + (f": '{winner}' gives more" if winner else "")
        return RuleTrace(status="lost_in_group", reason=reason, **common)
    return RuleTrace(status="condition_false", reason="did not apply", **common)  # pragma: no cover - defensive


def _scheduled(trigger: ast.Trigger, day: dt.date) -> bool:
    from ..language.schema import WEEKDAYS

    if trigger.schedule == "weekly":
        return day.weekday() == WEEKDAYS.index(trigger.schedule_arg.name)
    if trigger.schedule == "monthly":
        return runtime.monthly_due(day, int(trigger.schedule_arg))
    return True


def _window(plan) -> str:
    if plan.valid_from and plan.valid_to:
        return f"{plan.valid_from.isoformat()} to {plan.valid_to.isoformat()}"
    if plan.valid_from:
        return f"from {plan.valid_from.isoformat()}"
    return f"until {plan.valid_to.isoformat()}"


def _conditions(outcome, plan):
    program = outcome.program
    values = program.condition_values(plan, outcome)
    for conjunct, (value, left, right) in zip(flatten_and(plan.rule.condition), values):
        passed = bool(value)
        text = span_text(program, conjunct)
        if isinstance(conjunct, ast.Binary) and conjunct.op in COMPARISONS:
            left_text, right_text = _plain_side(program, conjunct.left), _plain_side(program, conjunct.right)
            if _is_weekday(conjunct.left) or _is_weekday(conjunct.right):  # 0..6 read as monday..sunday
                left, right = _weekday_name(left), _weekday_name(right)
            money = tuple(program.checked.type_of(side) == T.MONEY for side in (conjunct.left, conjunct.right))
            yield Condition(text, passed, conjunct.op, left_text, left, right_text, right, money)
        else:
            yield Condition(text, passed)


def _is_weekday(node) -> bool:
    return isinstance(node, ast.Call) and node.name.name == "weekday"


def _weekday_name(value):
    from ..language.schema import WEEKDAYS

    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and 0 <= value <= 6 and value == int(value):
        return _Day(WEEKDAYS[int(value)])
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_weekday_name(v) for v in value]
    return value


def _plain_side(program, node) -> str:
    """The source text of a side, or ``=VALUE`` for a literal (shown once, not twice)."""
    text = span_text(program, node)
    if isinstance(node, ast.Path) and node.dotted in _Day.NAMES:  # monday ... sunday are plain values too
        return "=" + text
    if isinstance(node, ast.Literal) or (
        isinstance(node, ast.ListExpr)
        and all(isinstance(i, ast.Literal) or isinstance(i, ast.Path) and i.dotted in _Day.NAMES for i in node.items)
    ):
        return "=" + text
    return text


def _side(text: str | None, value: Any, money: bool = False) -> str:
    shown = f"{value:.2f}" if money and isinstance(value, Decimal) else _value(value)
    if text is None:
        return shown
    if text.startswith("="):
        return text[1:]
    return f"{text} {shown}"


def span_text(program, node) -> str:
    """What the rule file says for ``node``, over several lines if need be (whitespace collapsed)."""
    span = getattr(node, "span", None)
    if span is None:
        return "?"
    if span.line == span.end_line:
        return program.sources.line(span.path, span.line)[span.column - 1 : span.end_column - 1] or "?"
    parts = []
    for n in range(span.line, span.end_line + 1):
        line = program.sources.line(span.path, n)
        if n == span.line:
            line = line[span.column - 1 :]
        elif n == span.end_line:
            line = line[: span.end_column - 1]
        parts.append(line.strip())
    return " ".join(p for p in parts if p)


def _value(value: Any) -> str:
    if value is None:
        return "none (missing)"
    if isinstance(value, bool):
        return _yes(value)
    if isinstance(value, Decimal):
        return fmt(value).replace(",", "")
    if isinstance(value, _Day):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


class _Day(str):
    """A weekday number shown by its name."""

    NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _yes(value: bool) -> str:
    return "true" if value else "false"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _balance_trace(outcome, balance: str, values) -> BalanceTrace:
    total, mult, earn, bonus, cut = (Decimal(v) for v in values)
    program = outcome.program
    records = outcome.raw[1]
    fins = outcome.raw[3] or {}
    rates, fixed, factors = [], [], []
    tier = outcome.context.member.tier
    if balance == "points" and tier in program.tier_multipliers and outcome.plan.event_type != "trigger":
        factors.append(f"{fmt(program.tier_multipliers[tier])} ({tier} tier)")
    for p in outcome.plan.rules:
        record = records[p.position]
        if record is None:
            continue
        for a in p.actions:
            if a.balance != balance:
                continue
            if a.kind == "award_rate" and (p.position, a.index) not in fins:
                rates.append(f"{_num(record[a.index])} ({p.rule.name})")
            elif a.kind == "award_fixed" or (p.position, a.index) in fins:
                shown = fins.get((p.position, a.index), record[a.index])
                note = ", budgeted: rounded on its own" if (p.position, a.index) in fins else ""
                fixed.append(f"{_num(shown)} ({p.rule.name}{note})")
            elif a.kind == "multiply":
                factors.append(f"{fmt(Decimal(record[a.index]))} ({p.rule.name})")
    before = earn * mult + bonus
    rounded = total + cut
    steps = []
    if rates:
        steps.append(f"rate awards: {' + '.join(rates)} = {_num(earn)}")
        if factors:
            steps.append(f"multiplied by {' x '.join(factors)} = x{_num(mult)}: {_num(earn * mult)}")
    if fixed:
        steps.append(f"fixed awards (not multiplied): {' + '.join(fixed)} = {_num(bonus)}")
    if rates and fixed:
        steps.append(f"together: {_num(before)}")
    rounding = program.checked.rounding
    if rounded != before:
        steps.append(f"rounded once ({rounding}): {_num(before)} -> {_num(rounded)}")
    if cut:
        caps = [
            f"{a.node.amount} per {a.node.period}"
            for p in outcome.plan.rules
            if records[p.position] is not None
            for a in p.actions
            if a.kind == "cap" and a.balance == balance
        ]
        steps.append(f"capped ({', '.join(caps)}): {_num(cut)} over the cap -> {_num(total)}")
    steps.append(f"total: {_num(total)} {balance}")
    return BalanceTrace(balance, earn, mult, tuple(factors), bonus, before, rounding, rounded, cut, total, tuple(steps))


def _num(value) -> str:
    return fmt(Decimal(value)).replace(",", "")
