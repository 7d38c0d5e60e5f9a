"""Context from history: what a program reads about a member, loaded without scanning their past.

A program is scanned once for what it needs (statistics and their windows,
limit histories, budgets, caps, expiring lots, scores); per event the store
answers with a handful of indexed queries. Windowed statistics come from the
per-day ``activity`` rows summed in SQL, lifetime ones from the member row.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterator, Mapping
from decimal import Decimal

import attrs
from attrs import define, field

from ..engine.runtime import period_start
from ..language import ast
from ..model import MemberContext
from ..program import Program
from ..store.base import Lot, MemberRecord
from . import scoring

ZERO = Decimal(0)
CAP_PERIODS = ("day", "week", "month", "year")


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the month's end (Jan 31 + 1 month = Feb 28/29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


@functools.lru_cache(maxsize=16384)  # a stream of events asks for the same few days over and over
def shift(day: dt.date, amount: int, unit: str) -> dt.date:
    """``day`` plus ``amount`` days, weeks, months or years (negative goes back)."""
    if unit == "day":
        return day + dt.timedelta(days=amount)
    if unit == "week":
        return day + dt.timedelta(weeks=amount)
    if unit == "month":
        return add_months(day, amount)
    if unit == "year":
        return add_months(day, 12 * amount)
    raise ValueError(f"unknown unit {unit!r}")


def window_start(window: ast.Window, today: dt.date) -> dt.date | None:
    """First day inside ``window`` (inclusive) as seen on ``today``; None for lifetime."""
    if window.kind == "lifetime":
        return None
    if window.kind == "calendar":
        if window.unit == "year":
            return today.replace(month=1, day=1)
        if window.unit == "month":
            return today.replace(day=1)
        return today - dt.timedelta(days=today.weekday())
    return shift(today, -window.amount, window.unit) + dt.timedelta(days=1)


def iter_nodes(node) -> Iterator:
    """Every AST node under ``node`` (attrs classes, tuples and lists), depth first, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (tuple, list)):
            stack.extend(current)
        elif attrs.has(type(current)):
            yield current
            for f in attrs.fields(type(current)):
                if f.name != "span":
                    stack.append(getattr(current, f.name))


@define
class Needs:
    """What a program reads about a member, so the store loads only that."""

    windows: dict[str, ast.Window] = field(factory=dict)  # window key -> window
    stats: set[str] = field(factory=set)  # "spend:last_12_months" ...
    history_keys: set[str] = field(factory=set)  # "rule:NAME" / "trigger:NAME" with limits
    budget_keys: set[str] = field(factory=set)
    caps: set[tuple[str, str]] = field(factory=set)  # (balance, period)
    expiring: bool = False
    expiring_days: int | None = None  # the largest N of expiring_within(N), when every N is a number
    scores: set[str] = field(factory=set)


def program_needs(program: Program) -> Needs:
    checked = program.checked
    needs = Needs()
    roots: list = [*checked.rules, *checked.triggers]
    if checked.tiers is not None:
        window = checked.tiers.window
        needs.windows[window.key] = window
        needs.stats.add(f"{checked.tiers.metric.name}:{window.key}")
    for root in roots:
        if root.limits:
            prefix = "trigger:" if isinstance(root, ast.Trigger) else "rule:"
            needs.history_keys.add(prefix + root.name)
        for node in iter_nodes(root):
            if isinstance(node, ast.Stat):
                needs.windows[node.window.key] = node.window
                needs.stats.add(node.key)
            elif isinstance(node, ast.Cap) and node.period in CAP_PERIODS:
                balance = checked.balance_for_unit(node.unit.name)
                if balance:
                    needs.caps.add((balance, node.period))
            elif isinstance(node, ast.Call) and node.name.name == "expiring_within":
                days = node.args[0] if node.args else None
                literal = isinstance(days, ast.Literal) and isinstance(days.value, Decimal)
                horizon = int(days.value) if literal else None
                if not needs.expiring:
                    needs.expiring_days = horizon
                elif needs.expiring_days is not None:
                    needs.expiring_days = None if horizon is None else max(needs.expiring_days, horizon)
                needs.expiring = True
    for plans in program.code.events.values():
        for plan in plans.rules:
            needs.budget_keys.update(key for key, _, _ in plan.budgets)
    needs.scores = set(checked.score_names.values())
    if needs.scores:
        for window in scoring.WINDOWS:
            needs.windows[window.key] = window
    return needs


class MemberStats(Mapping):
    """A member's statistics, keyed like ``"spend:last_12_months"`` or ``"purchases:lifetime"``.

    Read straight from the per-window sums and a copy of the lifetime totals (a
    daily run reads one or two statistics of most members, so none is re-keyed
    until it is asked for).
    """

    __slots__ = ("_where", "_sums", "_lifetime")

    def __init__(self, where: dict[str, tuple[int, str]], sums: list[dict[str, Decimal]], lifetime: dict):
        self._where = where
        self._sums = sums
        self._lifetime = lifetime

    def get(self, key, default=None):
        found = self._where.get(key)
        if found is not None:
            i, name = found
            return self._sums[i].get(name, default) if i < len(self._sums) else default
        if isinstance(key, str) and key.endswith(":lifetime"):
            return self._lifetime.get(key[:-9], default)
        return default

    def __getitem__(self, key):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __iter__(self):
        for key, (i, name) in self._where.items():
            if i < len(self._sums) and name in self._sums[i]:
                yield key
        for name in self._lifetime:
            yield name + ":lifetime"

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"MemberStats({dict(self)!r})"


_MISSING = object()


class ContextBuilder:
    """Builds :class:`MemberContext` objects from the store for one program."""

    def __init__(self, program: Program, store):
        self.program = program
        self.store = store
        self.needs = program_needs(program)
        self.tz = zoneinfo.ZoneInfo(program.timezone)
        self.windows = [w for w in self.needs.windows.values() if w.kind != "lifetime"]
        # statistic key -> (window index, statistic), so a context finds a windowed value without building a map
        self._where = {f"{name}:{w.key}": (i, name) for i, w in enumerate(self.windows) for name in scoring.ACTIVITY}
        self.scoring = scoring.ScoreBoard(program)
        self._starts_for: dt.date | None = None
        self._starts: list[dt.date] = []

    def local_day(self, when: dt.datetime) -> dt.date:
        return when.astimezone(self.tz).date()

    def starts(self, today: dt.date) -> list[dt.date]:
        """The first day of each window the program reads, seen from ``today`` (the same for a whole day)."""
        if self._starts_for != today:
            self._starts = [window_start(w, today) for w in self.windows]
            self._starts_for = today
        return self._starts

    def stats_from(self, record: MemberRecord, sums: list[dict[str, Decimal]]) -> MemberStats:
        return MemberStats(self._where, sums, dict(record.lifetime))

    def build(self, record: MemberRecord, today: dt.date, lots: list[Lot] | None = None) -> MemberContext:
        """The context for one member, read from the store inside the current transaction."""
        store = self.store
        needs = self.needs
        member_id = record.member.id
        sums = store.activity_sums(member_id, self.starts(today)) if record.stored and self.windows else []
        history = store.firings(member_id, needs.history_keys) if needs.history_keys and record.stored else {}
        earned = {}
        if needs.caps and record.stored:
            for balance, period in needs.caps:
                earned[f"{balance}:{period}"] = store.earned_since(member_id, balance, period_start(today, period))
        if needs.expiring and lots is None and record.stored:
            lots = [lot for b in self.program.checked.balances for lot in store.open_lots(member_id, b)]
        budgets = store.budgets(needs.budget_keys) if needs.budget_keys else {}
        return self._context(record, today, sums, history, earned, budgets, lots or [])

    def _context(self, record, today, sums, history, earned, budgets, lots) -> MemberContext:
        stats = self.stats_from(record, sums)
        scores = scoring.LazyScores(self.scoring, record, stats, today) if self.needs.scores else {}
        return MemberContext(
            record.member,
            balances=record.balances,
            stats=stats,
            scores=scores,
            history={k: tuple(v) for k, v in history.items()},
            budgets=budgets,
            earned=earned,
            expiring=self.expiring(record, lots) if self.needs.expiring else {},
            last_purchase=record.last_purchase,
            first_purchase=record.first_purchase,
            tier_since=record.tier_since,
            tier_expires=record.grace_until or record.tier_review,
        )

    def expiring(self, record: MemberRecord, lots: list[Lot]) -> dict[str, tuple]:
        out: dict[str, list] = {}
        for lot in lots:
            due = lot_expiry(self.program, record, lot)
            if due is not None and lot.remaining > 0:
                out.setdefault(lot.balance, []).append((due, lot.remaining))
        return {k: tuple(v) for k, v in out.items()}

    def build_many(self, records: list[MemberRecord], today: dt.date) -> list[MemberContext]:
        """Contexts for a chunk of members with one query per kind of fact (for scheduled work)."""
        ids = [r.member.id for r in records]
        sums = self.store.activity_sums_for(ids, self.starts(today)) if self.windows else {}
        history = self.store.firings_for(ids, self.needs.history_keys) if self.needs.history_keys else {}
        lots = {}
        if self.needs.expiring:  # only the lots that can expire within the horizon the rules ask about
            horizon = self.needs.expiring_days
            until = today + dt.timedelta(days=horizon) if horizon is not None else None
            lots = self.store.open_lots_for(ids, until)
        budgets = self.store.budgets(self.needs.budget_keys) if self.needs.budget_keys else {}
        empty = [dict.fromkeys(scoring.ACTIVITY, ZERO) for _ in self.windows]
        contexts = [
            self._context(
                r,
                today,
                sums.get(r.member.id, empty),
                history.get(r.member.id, {}),
                {},
                budgets,
                lots.get(r.member.id, []),
            )
            for r in records
        ]
        if self.needs.scores and self.scoring.batched:
            self.scoring.prefill([c.scores for c in contexts])
        return contexts


def lot_expiry(program: Program, record: MemberRecord, lot: Lot) -> dt.date | None:
    """The day a lot expires: stored on the lot, or decided by the member's last activity."""
    if lot.expires_on is not None:
        return lot.expires_on
    policy = program.checked.balances[lot.balance].expiry
    if policy is None or policy.kind != "after" or policy.after != "last activity" or record.last_activity is None:
        return None
    tz = zoneinfo.ZoneInfo(program.timezone)
    return shift(record.last_activity.astimezone(tz).date(), policy.amount, policy.unit)


def new_lot_expiry(program: Program, record: MemberRecord, balance: str, earned_on: dt.date) -> dt.date | None:
    """The expiry day stored on a new lot (None: never, or follows last activity)."""
    policy = program.checked.balances[balance].expiry
    if policy is None or policy.kind == "never":
        return None
    if policy.kind == "year_end":
        return dt.date(earned_on.year + 1, 1, 1)
    if policy.after == "earning":
        return shift(earned_on, policy.amount, policy.unit)
    if policy.after == "joining":  # the end of the membership period the points were earned in
        joined = record.member.joined or earned_on
        periods = 1
        while shift(joined, policy.amount * periods, policy.unit) <= earned_on:
            periods += 1
        return shift(joined, policy.amount * periods, policy.unit)
    return None
