"""A loaded program: parse, check and compile once; evaluate many events.

>>> program = load_program("dsl/examples/coffee_chain.loy")    # doctest: +SKIP
>>> outcome = program.evaluate(event, context)                  # doctest: +SKIP
>>> outcome.points, outcome.coupons, outcome.explanations       # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import os
import threading
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path

from .engine import runtime
from .engine.codegen import Emitter
from .engine.compiler import ProgramCompiler, RulePlan
from .engine.outcome import Outcome, fmt
from .errors import EvaluationError, InputError, RuleFileError
from .language import ast
from .language.checker import CheckedProgram, flatten_and
from .language.diagnostics import Diagnostic, Sources
from .language.frontend import CheckResult, check_source
from .language.schema import Schema, default_schema
from .model import Event, Member, MemberContext

_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in", "notin")


class Program:
    """A checked and compiled loyalty program. Immutable; safe to share between threads."""

    def __init__(self, checked: CheckedProgram, sources: Sources, warnings: list[Diagnostic], source_hash: str):
        self.checked = checked
        self.sources = sources
        self.warnings = warnings
        self.source_hash = source_hash
        self._compiler = ProgramCompiler(checked)
        self.code = self._compiler.compile()
        self.tier_multipliers = {
            lvl.name.name: lvl.multiplier for lvl in (checked.tiers.levels if checked.tiers else ()) if lvl.multiplier
        }
        self._lazy: dict = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- facts

    @property
    def name(self) -> str:
        return self.checked.name

    @property
    def currency(self) -> str:
        return self.checked.currency

    @property
    def timezone(self) -> str:
        return self.checked.timezone

    @property
    def event_types(self) -> dict[str, dict[str, str]]:
        return self.checked.schema.event_types

    @property
    def version(self) -> str:
        """A hash of the program text (all files): the program version."""
        return self.source_hash

    # -------------------------------------------------------------- evaluation

    def evaluate(
        self, event: Event, context: MemberContext | Member | None = None, as_of: dt.datetime | None = None
    ) -> Outcome:
        """Evaluate one event: pure and deterministic, no side effects.

        ``context`` defaults to a member known only by the event's member id.
        ``as_of`` (timezone-aware) replaces the event time for dates, limits
        and campaign windows.
        """
        if context is None:
            context = MemberContext(Member(event.member))
        elif isinstance(context, Member):
            context = MemberContext(context)
        if as_of is not None and as_of.utcoffset() is None:
            raise InputError([("as_of", "must be timezone-aware")], "evaluation")
        plan = self.code.events.get(event.type)
        if plan is None:
            if event.type not in self.checked.schema.event_types:
                raise InputError([("type", f"'{event.type}' is not an event type this program knows")], "event")
            return Outcome(self, None, event, context, as_of, None)
        try:
            raw = plan.function(event, context, as_of)
        except (TypeError, AttributeError, ArithmeticError, ValueError) as exc:
            raise self._evaluation_error(exc, plan) from exc
        return Outcome(self, plan, event, context, as_of, raw)

    def run_triggers(self, context: MemberContext, as_of: dt.datetime) -> Outcome:
        """Evaluate the retention triggers for one member at ``as_of`` (no writes)."""
        if as_of.utcoffset() is None:
            raise InputError([("as_of", "must be timezone-aware")], "evaluation")
        plan = self.code.triggers
        if plan is None:
            return Outcome(self, None, None, context, as_of, None)
        try:
            raw = plan.function(context, as_of)
        except (TypeError, AttributeError, ArithmeticError, ValueError) as exc:
            raise self._evaluation_error(exc, plan) from exc
        return Outcome(self, plan, None, context, as_of, raw)

    def _evaluation_error(self, exc: Exception, plan) -> EvaluationError:
        rule = self._failing_rule(exc, plan)
        name = rule.name if rule is not None else None
        where = str(rule.span) if rule is not None else None
        if isinstance(exc, decimal.InvalidOperation | decimal.Overflow | OverflowError):
            # str() of these is "[<class 'decimal.InvalidOperation'>]": say what it means instead
            return EvaluationError(
                "evaluation failed: a computed amount is too large (more than 28 significant digits); "
                "check the multipliers and rates the rules apply together",
                name,
                where,
            )
        return EvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}", name, where)

    @staticmethod
    def _failing_rule(exc: Exception, plan):
        """The rule whose generated code raised, from the line the plan's function stopped at."""
        line = None
        code = getattr(plan.function, "__code__", None)
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is code:
                line = tb.tb_lineno
            tb = tb.tb_next
        return None if line is None else plan.rule_at(line)

    # -------------------------------------------------------------- lazy helpers for outcomes

    def render(self, template: ast.Template, outcome: Outcome) -> str:
        fn = self._compiled(("tpl", id(template)), lambda em: self._template_body(em, template))
        values = fn(outcome.event, outcome.context, outcome.as_of)
        out = []
        for part, value in zip(template.parts, values):
            if isinstance(part, str):
                out.append(part)
            elif value is None:
                out.append("")
            elif isinstance(value, Decimal):
                out.append(fmt(value))
            elif isinstance(value, (dt.date, dt.datetime)):
                out.append(value.isoformat())
            elif isinstance(value, bool):
                out.append("yes" if value else "no")
            else:
                out.append(str(value))
        return "".join(out)

    def _template_body(self, em: Emitter, template: ast.Template) -> str:
        parts = []
        for part in template.parts:
            parts.append("None" if isinstance(part, str) else em.expr(part)[0])
        return "(" + "".join(p + ", " for p in parts) + ")"

    def probe(self, plan: RulePlan, outcome: Outcome) -> list[tuple]:
        """Each top-level condition of a rule with its value (and both sides of comparisons)."""
        rule = plan.rule
        fn = self._compiled(("probe", id(rule)), lambda em: self._probe_body(em, rule))
        return list(fn(outcome.event, outcome.context, outcome.as_of))

    def _probe_body(self, em: Emitter, rule) -> str:
        results = []
        for conjunct in flatten_and(rule.condition):
            value, _ = em.expr(conjunct)
            value = em.bind(value)
            if isinstance(conjunct, ast.Binary) and conjunct.op in ("<", "<=", ">", ">="):
                left = em.bind(em.expr(conjunct.left)[0])
                right = em.bind(em.expr(conjunct.right)[0])
                if conjunct.op in ("<", "<="):
                    left, right = right, left
                results.append(f"({value}, {left}, {right})")
            else:
                results.append(f"({value}, None, None)")
        return "(" + "".join(r + ", " for r in results) + ")"

    def condition_values(self, plan: RulePlan, outcome: Outcome) -> list[tuple]:
        """Each top-level condition of a rule as (value, left, right), both sides for any comparison.

        Unlike :meth:`probe` the sides keep their written order (``a < b`` gives ``a, b``).
        """
        rule = plan.rule
        fn = self._compiled(("sides", id(rule)), lambda em: self._sides_body(em, rule))
        return list(fn(outcome.event, outcome.context, outcome.as_of))

    def _sides_body(self, em: Emitter, rule) -> str:
        results = []
        for conjunct in flatten_and(rule.condition):
            value = em.bind(em.expr(conjunct)[0])
            if isinstance(conjunct, ast.Binary) and conjunct.op in _COMPARISONS:
                left = em.bind(em.expr(conjunct.left)[0])
                right = em.bind(em.expr(conjunct.right)[0])
                results.append(f"({value}, {left}, {right})")
            else:
                results.append(f"({value}, None, None)")
        return "(" + "".join(r + ", " for r in results) + ")"

    def explain(self, event: Event, context: MemberContext | Member | None = None, as_of: dt.datetime | None = None):
        """Evaluate ``event`` and return its :class:`~loyalty_engine.engine.trace.Trace`: every rule in
        evaluation order, whether it applied and why (or why not), and how each balance was computed."""
        from .engine.trace import build_trace

        return build_trace(self.evaluate(event, context, as_of))

    def explain_triggers(self, context: MemberContext | Member, as_of: dt.datetime):
        """The :class:`~loyalty_engine.engine.trace.Trace` of the retention triggers for one member at ``as_of``."""
        from .engine.trace import build_trace

        if isinstance(context, Member):
            context = MemberContext(context)
        return build_trace(self.run_triggers(context, as_of))

    def item_matches(self, condition: ast.Expr, outcome: Outcome) -> tuple[bool, ...]:
        """Whether each cart line of the outcome's event meets ``condition`` (an item filter)."""
        fn = self._compiled(("match", id(condition)), lambda em: self._match_body(em, condition))
        return fn(outcome.event, outcome.context, outcome.as_of)

    def _match_body(self, em: Emitter, condition: ast.Expr) -> str:
        em.uses.add("items")
        result = em.temp("_r")
        item = em.temp("_it")
        em.line(f"{result} = []")
        with em.block(f"for {item} in _items:"):
            value, _ = em.expr(condition, item)
            em.line(f"{result}.append(True if {value} else False)")
        return result

    def _compiled(self, key, body):
        fn = self._lazy.get(key)
        if fn is not None:
            return fn
        with self._lock:
            em = Emitter(self.checked, self._compiler.k)
            ret = body(em)
            lines = ["def _lazy(_e, _c, as_of):", *em.prologue(), *em.lines, f"    return {ret}"]
            namespace = self._compiler.namespace()
            exec(compile("\n".join(lines), "<loyalty-program>", "exec"), namespace)  # noqa: S102 - from the tree only
            fn = namespace["_lazy"]
            self._lazy[key] = fn
        return fn

    def rule_could_apply(self, plan: RulePlan, outcome: Outcome) -> bool:
        """Date window, limits and budgets allow the rule (used for near-miss hints)."""
        when = outcome.as_of or outcome.event.at
        tz = self._compiler.tz
        today = when.astimezone(tz).date()
        if plan.valid_from and today < plan.valid_from:
            return False
        if plan.valid_to and today > plan.valid_to:
            return False
        ctx = outcome.context
        for limit in plan.rule.limits:
            key = ("trigger:" if isinstance(plan.rule, ast.Trigger) else "rule:") + plan.rule.name
            if not runtime.limit_ok(ctx, key, today, tz, limit.times, limit.period, limit.days):
                return False
        return all(runtime.budget_left(ctx, key, amount) > 0 for key, amount, unit in plan.budgets)

    def __repr__(self) -> str:
        return f"<Program {self.name!r} rules={len(self.checked.rules)} version={self.source_hash[:12]}>"


# ------------------------------------------------------------------ loading, with a cache by content


_CACHE: OrderedDict[tuple, Program] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


def check_program(path: str | Path, text: str | None = None, schema: Schema | None = None) -> CheckResult:
    """Parse and check a program without compiling it; never raises for rule-file problems."""
    return check_source(str(path), text, schema)


def load_program(path: str | Path, text: str | None = None, schema: Schema | None = None) -> Program:
    """Load, check and compile a program (with its includes).

    Raises :class:`RuleFileError` listing every error. Programs are cached by
    the hash of their text, so loading the same files again is cheap.
    """
    result = check_source(str(path), text, schema)
    if not result.ok:
        raise RuleFileError(result.diagnostics)
    digest = hashlib.sha256()
    base = os.path.dirname(os.path.abspath(path))
    for name in sorted(result.sources.texts, key=lambda n: os.path.relpath(os.path.abspath(n), base)):
        # names relative to the main file: the same program has the same version wherever it lives
        digest.update(os.path.relpath(os.path.abspath(name), base).encode())
        digest.update(b"\0")
        digest.update("\n".join(result.sources.texts[name]).encode())
        digest.update(b"\0")
    source_hash = digest.hexdigest()
    # the path as given is part of the key: locations in explanations name the file the way the caller did
    key = (source_hash, str(path), id(schema) if schema is not None else None)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
    program = Program(result.program, result.sources, result.warnings, source_hash)
    with _CACHE_LOCK:
        _CACHE[key] = program
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return program


def evaluate(
    program: Program, event: Event, member_context: MemberContext | Member | None = None, as_of=None
) -> Outcome:
    """Evaluate ``event`` for the member in ``member_context``: see :meth:`Program.evaluate`."""
    return program.evaluate(event, member_context, as_of)


__all__ = ["Program", "load_program", "check_program", "evaluate", "default_schema"]
