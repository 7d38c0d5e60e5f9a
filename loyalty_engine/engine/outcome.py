"""The result of evaluating one event (or one trigger run) for one member.

The compiled function returns a compact raw tuple; totals read from it
directly, while effects, explanations and near-miss hints are built on first
access, so a checkout that only needs the points pays only for those.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from ..language import ast
from .effects import Effect, json_number

if TYPE_CHECKING:
    from ..program import Program

_HEAD = 4  # coupons, records, settier, fins
_PER_BALANCE = 5  # total, mult, earn, bonus, cut


def fmt(value) -> str:
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return f"{int(value):,}"
        return f"{value.normalize():,f}" if abs(value.as_tuple().exponent) > 2 else f"{value:,.2f}"
    return str(value)


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


class Outcome:
    __slots__ = ("program", "plan", "event", "context", "as_of", "raw", "_effects", "_hints")

    def __init__(self, program: Program, plan, event, context, as_of, raw):
        self.program = program
        self.plan = plan
        self.event = event
        self.context = context
        self.as_of = as_of
        self.raw = raw
        self._effects = None
        self._hints = None

    # -------------------------------------------------------------- totals

    def total(self, balance: str = "points") -> Decimal:
        """Net change of ``balance`` from this event (after caps)."""
        if self.raw is None:
            return Decimal(0)
        i = self.program.code.balances.index(balance)
        value = self.raw[_HEAD + i * _PER_BALANCE]
        return Decimal(0) if value is None else value

    @property
    def points(self) -> int:
        """Points (the default balance) awarded by this event."""
        if self.raw is None:
            return 0
        value = self.raw[_HEAD]
        return 0 if value is None else int(value)

    @property
    def totals(self) -> dict[str, Decimal]:
        return {b: self.total(b) for b in self.program.code.balances if self._used(b)}

    def _used(self, balance: str) -> bool:
        i = self.program.code.balances.index(balance)
        return self.raw is not None and self.raw[_HEAD + i * _PER_BALANCE] is not None

    @property
    def coupons(self) -> tuple[str, ...]:
        return tuple(self.raw[0]) if self.raw is not None else ()

    @property
    def fired(self) -> list[str]:
        """Names of the rules (or triggers) that applied, in evaluation order."""
        if self.raw is None:
            return []
        return [p.rule.name for p in self.plan.rules if self.raw[1][p.position] is not None]

    # -------------------------------------------------------------- effects

    @property
    def effects(self) -> list[Effect]:
        if self._effects is None:
            from .explain import build_effects

            self._effects = build_effects(self)
        return self._effects

    @property
    def explanations(self) -> list[str]:
        return [e.explanation for e in self.effects]

    @property
    def hints(self) -> list[str]:
        """Near misses a cashier can read out, e.g. 'spend 12.50 CNY more for 500 points'."""
        if self._hints is None:
            from .hints import near_misses

            self._hints = near_misses(self)
        return self._hints

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.id if self.event is not None else None,
            "member": self.context.member.id,
            "points": self.points,
            "totals": {b: json_number(v) for b, v in self.totals.items()},
            "coupons": list(self.coupons),
            "effects": [e.to_dict() for e in self.effects],
            "explanations": self.explanations,
            "hints": self.hints,
        }

    def __repr__(self) -> str:
        return f"<Outcome points={self.points} coupons={list(self.coupons)} rules={self.fired}>"


def allocate(values: list[Decimal], total: Decimal, quantum: Decimal) -> list[Decimal]:
    """Split ``total`` over ``values`` (largest remainder) so the parts add up exactly."""
    if not values:
        return []
    floors = [(v / quantum).to_integral_value(rounding=ROUND_FLOOR) * quantum for v in values]
    diff = total - sum(floors, Decimal(0))
    steps = int((diff / quantum).to_integral_value())
    if steps == 0:
        return floors
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    if steps > 0:
        for n in range(steps):
            floors[order[n % len(order)]] += quantum
    elif steps < 0:
        for n in range(-steps):
            floors[order[-1 - (n % len(order))]] -= quantum
    return floors


def span_location(node) -> str | None:
    span = getattr(node, "span", None)
    return str(span) if isinstance(span, ast.Span) else None
