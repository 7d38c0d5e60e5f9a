"""Running the examples of a test file through a real Engine, and measuring rule coverage.

Each example gets a fresh in-memory store: the member is imported (opening
balances, tier, qualifying totals), then its events are processed in order by
``Engine(program, SQLiteStore(":memory:"), clock=...)``, so balances, tiers,
coupons, limits and budgets carry over from one event to the next exactly as
in production. The clock reads the time of the step being run.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from attrs import define, field

from ..engine.outcome import fmt
from ..errors import LoyaltyError
from ..program import Program
from ..service.engine import Engine
from ..service.imports import import_row
from ..store.sqlite import SQLiteStore
from .testfile import Example, Expect, Step, TestFile

ZERO = Decimal(0)


@define
class Mismatch:
    key: str
    expected: Any
    actual: Any


@define
class Failure:
    """What differed at one step (or at the end of the example), with the explanations of that step."""

    where: str
    line: int
    mismatches: list[Mismatch] = field(factory=list)
    error: str | None = None  # an event refused while no error was expected
    explanations: list[str] = field(factory=list)


@define
class ExampleResult:
    file: TestFile
    example: Example
    failures: list[Failure] = field(factory=list)
    fired: set[str] = field(factory=set)

    @property
    def passed(self) -> bool:
        return not self.failures


@define
class Observed:
    """What one step (or a whole example) did."""

    points: Decimal = ZERO
    earned: dict[str, Decimal] = field(factory=dict)
    coupons: list[str] = field(factory=list)
    messages: list[str] = field(factory=list)
    rewards: list[str] = field(factory=list)  # plugin rewards, as "cashback(amount: 1.32, max: 10)"
    rules: list[str] = field(factory=list)
    error: str | None = None
    balance: dict[str, Decimal] = field(factory=dict)
    available: dict[str, Decimal] = field(factory=dict)
    tier: str | None = None
    explanations: list[str] = field(factory=list)

    def add(self, other: Observed) -> None:
        self.points += other.points
        for b, v in other.earned.items():
            self.earned[b] = self.earned.get(b, ZERO) + v
        self.coupons += other.coupons
        self.messages += other.messages
        self.rewards += other.rewards
        self.rules += other.rules
        self.error = other.error
        self.balance, self.available, self.tier = other.balance, other.available, other.tier


class _Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def new_engine(program: Program, at: dt.datetime) -> tuple[Engine, _Clock]:
    clock = _Clock(at)
    return Engine(program, SQLiteStore(":memory:"), clock=clock), clock


def run_example(program: Program, test: TestFile, example: Example) -> ExampleResult:
    result = ExampleResult(test, example)
    first = example.steps[0].at(_tz(program)) if example.steps else dt.datetime.now(dt.UTC)
    engine, clock = new_engine(program, first)
    try:
        try:
            import_row(engine, dict(example.member), first)
        except LoyaltyError as exc:
            result.failures.append(Failure("the member", example.line, error=str(exc)))
            return result
        member_id = example.member["id"]
        total = Observed()
        for n, step in enumerate(example.steps):
            clock.now = step.at(_tz(program))
            observed = run_step(engine, step, member_id)
            result.fired.update(observed.rules)
            total.add(observed)
            total.explanations += [f"step {n + 1}: {e}" for e in observed.explanations if not e.startswith("hint: ")]
            where = _step_name(step, n)
            if step.expect is not None:
                failure = compare(step.expect, observed, where)
                if failure is not None:
                    result.failures.append(failure)
            elif observed.error is not None and not _error_expected_later(example, n):
                result.failures.append(Failure(where, step.line, error=observed.error))
            if observed.error is not None:
                break
        if example.expect is not None:
            failure = compare(example.expect, total, "at the end of the example")
            if failure is not None:
                result.failures.append(failure)
    finally:
        engine.close()
    return result


def _error_expected_later(example: Example, n: int) -> bool:
    return n == len(example.steps) - 1 and example.expect is not None and "error" in example.expect.values


def _tz(program: Program):
    import zoneinfo

    return zoneinfo.ZoneInfo(program.timezone)


def _step_name(step: Step, n: int) -> str:
    if step.triggers is not None:
        return f"step {n + 1} (triggers on {step.triggers.isoformat()})"
    return f"step {n + 1} ({step.data.get('type')} {step.data.get('id')} at {step.data.get('at')})"


def run_step(engine: Engine, step: Step, member_id: str) -> Observed:
    store = engine.store
    before_coupons = {c.code for c in store.coupons(member_id)}
    before_messages = len(store.messages())
    before = dict(store.load_member(member_id).balances) if store.load_member(member_id) else {}
    observed = Observed()
    if step.triggers is not None:
        report = engine.run_triggers(step.triggers)
        observed.rules = sorted(report.fired)
        after = store.load_member(member_id).balances
        observed.earned = {b: v - before.get(b, ZERO) for b, v in after.items() if v != before.get(b, ZERO)}
        observed.points = observed.earned.get("points", ZERO)
    else:
        try:
            result = engine.process(step.data)
        except LoyaltyError as exc:
            observed.error = str(exc)
        else:
            observed.earned = {b: v for b, v in result.totals.items() if v}
            observed.points = result.totals.get("points", ZERO)
            if result.outcome is not None:
                observed.rules = list(result.outcome.fired)
                observed.rewards = [reward_text(e) for e in result.outcome.effects if e.type == "reward"]
                observed.explanations = list(result.outcome.explanations) + [f"hint: {h}" for h in result.outcome.hints]
            observed.explanations += list(result.notes)
    for coupon in store.coupons(member_id):
        if coupon.code not in before_coupons:
            observed.coupons.append(coupon.template)
    observed.messages = [m.body for m in store.messages()[before_messages:] if m.member == member_id]
    record = store.load_member(member_id)
    if record is not None:
        view = engine.member(member_id, step.at(engine.tz))
        observed.balance = {name: b.total for name, b in view.balances.items()}
        observed.available = {name: b.available for name, b in view.balances.items()}
        observed.tier = record.member.tier
    return observed


# ------------------------------------------------------------------ comparing


def _num(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _same_number(actual: Any, expected: Any) -> bool:
    a, e = _num(actual), _num(expected)
    return a is not None and e is not None and a == e


def compare(expect: Expect, observed: Observed, where: str) -> Failure | None:
    failure = Failure(where, expect.line, explanations=observed.explanations)
    values = expect.values
    if observed.error is not None and "error" not in values:
        failure.error = observed.error
        return failure
    for key, want in values.items():
        if key == "error":
            if observed.error is None:
                failure.mismatches.append(Mismatch("error", f"an error containing {want!r}", "the event was accepted"))
            elif str(want) not in observed.error:
                failure.mismatches.append(Mismatch("error", f"an error containing {want!r}", observed.error))
        elif key == "points":
            if not _same_number(observed.points, want):
                failure.mismatches.append(Mismatch("points", want, observed.points))
        elif key == "earned":
            _compare_balances(failure, "earned", want, observed.earned, "points")
        elif key in ("balance", "available"):
            _compare_balances(failure, key, want, getattr(observed, key), "points")
        elif key == "tier":
            if observed.tier != want:
                failure.mismatches.append(Mismatch("tier", want, observed.tier))
        elif key == "coupons":
            if [str(c) for c in want] != observed.coupons:
                failure.mismatches.append(Mismatch("coupons", list(want), observed.coupons))
        elif key == "rules":
            if [str(r) for r in want] != observed.rules:
                failure.mismatches.append(Mismatch("rules", list(want), observed.rules))
        elif key in ("messages", "rewards"):
            if not _messages_match([str(m) for m in want], getattr(observed, key)):
                failure.mismatches.append(Mismatch(key, list(want), getattr(observed, key)))
    return failure if failure.mismatches or failure.error else None


def _compare_balances(failure: Failure, key: str, want: Any, actual: dict[str, Decimal], default: str) -> None:
    if not isinstance(want, dict):
        want = {default: want}
    for balance, value in want.items():
        got = actual.get(balance, ZERO)
        if not _same_number(got, value):
            failure.mismatches.append(
                Mismatch(f"{key}.{balance}" if len(want) > 1 or balance != default else key, value, got)
            )


def reward_text(effect) -> str:
    def plain(value):
        return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)

    return f"{effect.reward}(" + ", ".join(f"{k}: {plain(v)}" for k, v in effect.args.items()) + ")"


def _messages_match(wanted: list[str], actual: list[str]) -> bool:
    """Each expected text is part of a different message, and there are as many messages as texts."""
    if len(wanted) != len(actual):
        return False
    free = list(actual)
    for text in wanted:
        hit = next((m for m in free if text in m), None)
        if hit is None:
            return False
        free.remove(hit)
    return True


# ------------------------------------------------------------------ showing


def show(value: Any) -> str:
    if isinstance(value, Decimal):
        return fmt(value).replace(",", "")
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]" if value else "[] (none)"
    if value is None:
        return "none"
    return str(value)


def failure_dict(failure: Failure) -> dict[str, Any]:
    """A failure for ``loyalty test --json``: where, the refusal if any, and each value expected and got."""
    return {
        "where": failure.where,
        "line": failure.line,
        "error": failure.error,
        "mismatches": [{"key": m.key, "expected": m.expected, "actual": m.actual} for m in failure.mismatches],
        "explanations": failure.explanations,
    }


def render_failure(failure: Failure, path: str) -> list[str]:
    lines = [f"  {failure.where}, expected at {path}:{failure.line}:"]
    if failure.error:
        lines.append(f"    the event was refused: {failure.error}")
        lines.append("    hint: fix the event, or expect the refusal with 'error: TEXT'")
    width = max((len(m.key) for m in failure.mismatches), default=0)
    for m in failure.mismatches:
        lines.append(f"    {m.key.ljust(width)}  expected {show(m.expected)}")
        lines.append(f"    {' ' * width}  actual   {show(m.actual)}")
    if failure.explanations and failure.mismatches:
        lines.append("    what the engine did:")
        lines += [f"      {e}" for e in failure.explanations]
    return lines


# ------------------------------------------------------------------ coverage


@define
class Coverage:
    program: Program
    fired: set[str] = field(factory=set)
    examples: int = 0

    def never_fired(self) -> list[tuple[str, str, str]]:
        """(kind, name, location) of every rule and trigger no example fired."""
        checked = self.program.checked
        out = []
        for rule in checked.rules:
            if rule.name not in self.fired:
                out.append(("rule", rule.name, f"{rule.span.path}:{rule.span.line}"))
        for trigger in checked.triggers:
            if trigger.name not in self.fired:
                out.append(("trigger", trigger.name, f"{trigger.span.path}:{trigger.span.line}"))
        return out

    def summary(self) -> str:
        checked = self.program.checked
        rules = {r.name for r in checked.rules}
        triggers = {t.name for t in checked.triggers}
        text = f"{len(rules & self.fired)} of {len(rules)} rules"
        if triggers:
            text += f", {len(triggers & self.fired)} of {len(triggers)} triggers"
        return text + " fired"
