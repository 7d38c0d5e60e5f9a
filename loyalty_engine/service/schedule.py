"""Time-driven work for one local day: points expiry, tier review, retention triggers.

Everything streams over members in chunks (memory does not grow with the
number of members) and commits chunk by chunk:

- expiry closes lots, so expiring again finds nothing to do;
- tier review moves the next review date on, so reviewing again is a no-op;
- triggers record the day's progress (the last member done) in the same
  transaction as the chunk's firings, so a run that is interrupted resumes
  where it stopped and a day that is done is never run twice. A trigger's own
  ``limit`` is enforced from its recorded firings across days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from attrs import define, field

from ..engine.outcome import Outcome
from ..errors import EvaluationError, InputError
from ..store.base import MemberRecord
from .history import lot_expiry, shift, window_start

ZERO = Decimal(0)
CHUNK = 1000
MAX_ERRORS = 20


@define
class DayReport:
    """What one day's run did."""

    day: dt.date
    expired: dict[str, Decimal] = field(factory=dict)  # per balance
    expired_members: int = 0
    upgrades: int = 0
    downgrades: int = 0
    grace_started: int = 0
    members_checked: int = 0  # members whose triggers were evaluated
    members_skipped: int = 0  # members no due trigger could fire for, ruled out by the store (see prefilter)
    fired: dict[str, int] = field(factory=dict)  # per trigger
    coupons: int = 0
    messages: int = 0
    already_done: bool = False
    errors: list[str] = field(factory=list)  # the first MAX_ERRORS problems (a failing scoring model ...)
    error_count: int = 0

    def add_error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    def to_dict(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "expired": {k: str(v) for k, v in self.expired.items()},
            "expired_members": self.expired_members,
            "upgrades": self.upgrades,
            "downgrades": self.downgrades,
            "grace_started": self.grace_started,
            "members_checked": self.members_checked,
            "members_skipped": self.members_skipped,
            "fired": dict(self.fired),
            "coupons": self.coupons,
            "messages": self.messages,
            "already_done": self.already_done,
            "errors": list(self.errors),
            "error_count": self.error_count,
        }


def day_and_time(engine, as_of: dt.datetime | dt.date) -> tuple[dt.date, dt.datetime]:
    if isinstance(as_of, dt.datetime):
        if as_of.utcoffset() is None:
            raise InputError([("as_of", f"must be timezone-aware (got {as_of!r})")], "trigger run")
        return engine.local_day(as_of), as_of
    if not isinstance(as_of, dt.date):
        raise InputError([("as_of", f"must be a date or a timezone-aware datetime (got {as_of!r})")], "trigger run")
    # a bare date means the start of that local day (fold=0 picks the first of two ambiguous times)
    start = dt.datetime.combine(as_of, dt.time(0), engine.tz)
    return as_of, start


def run_day(engine, as_of, progress: Callable[[int], None] | None = None) -> DayReport:
    day, at = day_and_time(engine, as_of)
    report = DayReport(day)
    expire_points(engine, day, at, report)
    review_tiers(engine, day, at, report)
    run_triggers(engine, day, at, report, progress)
    return report


def _in_pages(store, fetch: Callable[[str | None, int], list[str]], handle: Callable[[list[str]], None]) -> None:
    """``handle`` each page of member ids that ``fetch(after, CHUNK)`` returns, one write transaction per page."""
    after = None
    while True:
        with store.transaction():
            ids = fetch(after, CHUNK)
            handle(ids)
        if len(ids) < CHUNK:
            return
        after = ids[-1]


# ------------------------------------------------------------------ expiry


def expire_points(engine, day: dt.date, at: dt.datetime, report: DayReport) -> None:
    store = engine.store
    touched: set[str] = set()
    while True:  # lots with a stored expiry day; closed lots drop out of the query
        with store.transaction():
            lots = store.lots_expiring(day, CHUNK)
            by_member: dict[str, list] = {}
            for lot in lots:
                by_member.setdefault(lot.member, []).append(lot)
            for member_id, member_lots in by_member.items():
                record = store.load_member(member_id)
                for lot in member_lots:
                    _expire_lot(engine, record, lot, at, report)
                store.save_member(record)
                touched.add(member_id)
        if len(lots) < CHUNK:
            break
    balances = [
        name
        for name, info in engine.program.checked.balances.items()
        if info.expiry is not None and info.expiry.kind == "after" and info.expiry.after == "last activity"
    ]
    if balances:
        policies = [engine.program.checked.balances[b].expiry for b in balances]
        shortest = min(shift(day, -p.amount, p.unit) for p in policies)
        # a loose cut in SQL (last activity is stored with its offset); lot_expiry decides exactly
        cutoff = dt.datetime.combine(shortest + dt.timedelta(days=2), dt.time(0), dt.UTC)

        def expire_inactive(ids: list[str]) -> None:
            for member_id in ids:
                record = store.load_member(member_id)
                due = [
                    lot
                    for balance in balances
                    for lot in store.open_lots(member_id, balance)
                    if (expiry := lot_expiry(engine.program, record, lot)) is not None and expiry <= day
                ]
                for lot in due:
                    _expire_lot(engine, record, lot, at, report)
                if due:
                    store.save_member(record)
                    touched.add(member_id)

        _in_pages(store, lambda after, n: store.members_inactive_since(cutoff, after, n), expire_inactive)
    report.expired_members = len(touched)


def _expire_lot(engine, record: MemberRecord, lot, at: dt.datetime, report: DayReport) -> None:
    if lot.remaining <= 0:
        return
    entries = engine.ledger.post(
        record, lot.balance, "expire", -lot.remaining, at, reason=f"expired (earned {lot.earned_on})", prefer_lot=lot.id
    )
    for e in entries:
        report.expired[e.balance] = report.expired.get(e.balance, ZERO) - e.amount


# ------------------------------------------------------------------ tier review


def qualified_level(engine, record: MemberRecord, day: dt.date):
    """(index, level, value): the highest level the member's statistic reaches on ``day``."""
    tiers = engine.program.checked.tiers
    metric = tiers.metric.name
    start = window_start(tiers.window, day)
    if start is None:
        value = record.lifetime.get(metric, ZERO)
    else:
        value = engine.store.activity_sums(record.member.id, [start])[0][metric] if record.stored else ZERO
    reached = (0, tiers.levels[0], value) if tiers.levels else (None, None, value)
    for i, level in enumerate(tiers.levels):
        if value >= level.threshold:
            reached = (i, level, value)
    return reached


def review_tiers(engine, day: dt.date, at: dt.datetime, report: DayReport) -> None:
    tiers = engine.program.checked.tiers
    if tiers is None or not tiers.levels:
        return
    store = engine.store
    names = [lvl.name.name for lvl in tiers.levels]
    every = tiers.review.every_months if tiers.review else 12
    grace = tiers.review.grace_months if tiers.review else 0

    def review(ids: list[str]) -> None:
        for member_id in ids:
            record = store.load_member(member_id)
            _review(engine, record, day, at, report, names, every, grace)
            store.save_member(record)

    _in_pages(store, lambda after, n: store.members_due_review(day, after, n), review)


def _review(engine, record: MemberRecord, day, at, report, names, every, grace) -> None:
    index, level, value = qualified_level(engine, record, day)
    current = names.index(record.member.tier) if record.member.tier in names else -1
    metric = engine.program.checked.tiers.metric.name
    if index is not None and index > current:
        engine.applier.change_tier(record, level.name.name, at, f"review: {metric} {value} >= {level.threshold}", None)
        report.upgrades += 1
        return
    if index is None or index == current:
        record.grace_until = None
        record.tier_review = _next_review(record.tier_review, day, every)
        return
    if grace and record.grace_until is None:
        record.grace_until = shift(day, grace, "month")
        record.tier_review = record.grace_until  # reviewed again when the grace ends
        report.grace_started += 1
        return
    if record.grace_until is not None and record.grace_until > day:
        return
    engine.applier.change_tier(
        record, level.name.name, at, f"review: {metric} {value} < {_threshold(names, current)}", None
    )
    report.downgrades += 1


def _threshold(names, current) -> str:
    return f"the {names[current]} threshold" if current >= 0 else "required"


def _next_review(previous: dt.date | None, day: dt.date, every: int) -> dt.date:
    nxt = previous or day
    while nxt <= day:
        nxt = shift(nxt, every, "month")
    return nxt


# ------------------------------------------------------------------ retention triggers


def run_triggers(engine, day: dt.date, at: dt.datetime, report: DayReport, progress) -> None:
    plan = engine.program.code.triggers
    if plan is None:
        return
    store = engine.store
    last, done = store.schedule_progress(day)

    def evaluate(context, when):
        try:
            return plan.function(context, when)
        except (TypeError, AttributeError, ArithmeticError, ValueError) as exc:
            raise EvaluationError(
                f"triggers failed for member '{context.member.id}': {type(exc).__name__}: {exc}"
            ) from exc

    if done:
        report.already_done = True
        return
    member_filter = _member_filter(engine, day)
    while True:
        with store.transaction():
            if member_filter is None:
                records = store.iter_members(last, CHUNK)
            else:
                records = store.iter_members_matching(member_filter, last, CHUNK)
            contexts = engine.context.build_many(records, day)
            for record, context in zip(records, contexts):
                raw = evaluate(context, at)  # most members fire nothing: build an Outcome only for those who do
                failures = getattr(context.scores, "errors", None)
                if failures:
                    for text in failures:
                        report.add_error(text)
                if raw is None or not any(r is not None for r in raw[1]):
                    continue
                outcome = Outcome(engine.program, plan, None, context, at, raw)
                source = f"{day.isoformat()}:{record.member.id}"
                entries, coupons, _tier, messages, _notes = engine.applier.apply(record, outcome, source, at, None)
                for name in outcome.fired:
                    report.fired[name] = report.fired.get(name, 0) + 1
                report.coupons += len(coupons)
                report.messages += messages
                store.save_member(record)
            if records:
                last = records[-1].member.id
            store.set_schedule_progress(day, last, len(records) < CHUNK)
        report.members_checked += len(records)
        if progress is not None:
            progress(len(records))
        if len(records) < CHUNK:
            break
    if member_filter is not None:
        report.members_skipped = max(0, store.count_members() - report.members_checked)


def _member_filter(engine, day: dt.date):
    """Which members the day's due triggers can fire for (see :mod:`.prefilter`); None: every member
    (the store cannot select them, the engine was told not to, or some due trigger can fire for anyone)."""
    if engine.trigger_prefilter and hasattr(engine.store, "iter_members_matching"):
        return engine.trigger_filter.for_day(day)
    return None
