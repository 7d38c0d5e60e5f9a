"""Replaying a history through a program, day by day, in memory.

The replay streams the history file (JSON lines or CSV) once, in order. Before
the first event of each new local day it runs the days in between the way the
nightly job does (``Engine.run_triggers``: expiry, tier review, retention
triggers), so a simulated year sees every day of it. Events go through the real
engine code (:class:`SimEngine` is the :class:`Engine` with the idempotency
bookkeeping a replay does not need left out) over a :class:`MemoryStore`.

A line that is bad (not JSON, a missing field, a refused redemption) is
counted with its line number and skipped; the run goes on.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..engine import runtime
from ..errors import InputError, LoyaltyError
from ..language import ast
from ..language.checker import flatten_and
from ..program import Program
from ..service.engine import Engine
from ..service.history import program_needs
from ..service.imports import import_row, read_rows
from ..service.replay import dispatch, read_lines
from ..wire import _datetime, canonical_json
from .report import Tally
from .state import MemoryStore

CAP_DAYS = {"day": 1, "week": 7, "month": 31, "year": 366}
ZERO = Decimal(0)


class SimEngine(Engine):
    """The engine over a :class:`MemoryStore`, without what only a live store needs.

    A replay processes each id once, so there is no payload hash and no stored
    result, except for what a later refund reads (its purchase's payload).
    """

    def idempotent(self, op_id, kind, member, payload, apply):
        if not op_id:
            raise InputError([("id", "an id (or reference) is required so that a retry is not applied twice")], kind)
        return apply("")

    def process(self, event):
        ev = self.to_event(event)
        self._check_type(ev)
        if ev.type == "refund":
            if not ev.original:
                raise InputError([("original", "a refund must name the purchase it refunds")], "event")
            return self._refund(ev, canonical_json(ev), "")
        payload = canonical_json(ev) if ev.type == "purchase" and self.store.keeps(ev.id) else ""
        return self._apply(ev, payload, "")

    def store_result(self, result, digest, payload, at, original=None) -> None:
        store = self.store
        if result.status == "parked" or (result.kind == "purchase" and store.keeps(result.id)):
            super().store_result(result, digest, payload, at, original)
        elif result.kind == "refund":
            store.events.pop(result.id, None)
            if original:
                store.reference_done(original)


# ------------------------------------------------------------------ reading history files


def read_history(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed record or None, problem) for each record of a JSONL or CSV file."""
    path = Path(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if path.suffix.lower() == ".csv":
            yield from read_csv(fh)
            return
        yield from read_lines(fh)


CSV_EVENT_FIELDS = ("id", "type", "member", "at", "channel", "store", "payment", "original", "points", "amount")
CSV_ITEM_FIELDS = ("sku", "category", "quantity", "unit_price")


def read_csv(fh: io.TextIOBase) -> Iterator[tuple[int, Any, str | None]]:
    """A CSV export: one row per line item; consecutive rows with the same ``id`` are one event.

    Columns: ``id,type,member,at`` and optionally ``channel,store,payment,original,points,amount``
    and ``sku,category,quantity,unit_price`` (a row without a sku adds no item).
    """
    reader = csv.DictReader(fh)
    missing = [c for c in ("id", "type", "member", "at") if c not in (reader.fieldnames or ())]
    if missing:
        yield 1, None, f"CSV header lacks the column(s) {', '.join(missing)}"
        return
    current: dict | None = None
    first = 0
    for row in reader:
        number = reader.line_num
        if current is not None and row.get("id") == current["id"]:
            _csv_item(current, row)
            continue
        if current is not None:
            yield first, current, None
        current = {k: row[k] for k in CSV_EVENT_FIELDS if row.get(k) not in (None, "")}
        if current.get("points"):
            current["points"] = _number(current["points"])
        current.setdefault("id", "")
        first = number
        _csv_item(current, row)
    if current is not None:
        yield first, current, None


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def _csv_item(event: dict, row: dict) -> None:
    if row.get("sku"):
        item = {k: row[k] for k in CSV_ITEM_FIELDS if row.get(k) not in (None, "")}
        event.setdefault("items", []).append(item)


def referenced(data) -> str | None:
    """The purchase a history line reads back: a refund's ``original``, a coupon redemption's ``purchase`` id."""
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    name = data.get("original") if kind == "refund" else data.get("purchase") if kind == "redeem_coupon" else None
    return name if isinstance(name, str) and name else None


def count_references(path: str | Path) -> dict[str, int]:
    """The purchases later lines read back (refunds, coupon redemptions), with how many lines do (a quick first pass)."""
    keep: dict[str, int] = {}
    if Path(path).suffix.lower() == ".csv":
        for _, data, _ in read_history(path):
            if (name := referenced(data)) is not None:
                keep[name] = keep.get(name, 0) + 1
        return keep
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if '"original"' not in line and '"redeem_coupon"' not in line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (name := referenced(data)) is not None:
                keep[name] = keep.get(name, 0) + 1
    return keep


# ------------------------------------------------------------------ which members a trigger could fire for

GUARDED_DATES = {"member.last_purchase": "last_purchase", "member.joined": "joined", "member.first_purchase": "first"}


def _days_since_path(node) -> str | None:
    if isinstance(node, ast.Call) and node.name.name == "days_since" and len(node.args) == 1:
        arg = node.args[0]
        if isinstance(arg, ast.Path) and arg.dotted in GUARDED_DATES:
            return GUARDED_DATES[arg.dotted]
    return None


def _number_literal(node) -> Decimal | None:
    if isinstance(node, ast.Literal) and isinstance(node.value, Decimal) and node.kind == "number":
        return node.value
    return None


COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}


def _checks(trigger) -> list[tuple]:
    """The necessary conditions of one trigger the guard can test cheaply."""
    checks: list[tuple] = []
    for conjunct in flatten_and(trigger.condition) if trigger.condition is not None else ():
        if isinstance(conjunct, ast.Binary) and conjunct.op in COMPARE:
            left, right = conjunct.left, _number_literal(conjunct.right)
            if right is None:
                continue
            if (what := _days_since_path(left)) and conjunct.op in (">=", ">"):
                checks.append(("since", what, right + (1 if conjunct.op == ">" else 0), None))
            elif isinstance(left, ast.Stat) and left.window.kind == "lifetime":
                checks.append(("lifetime", left.name.name, COMPARE[conjunct.op], right))
        elif isinstance(conjunct, ast.Call) and conjunct.name.name == "between" and len(conjunct.args) == 3:
            what = _days_since_path(conjunct.args[0])
            low, high = _number_literal(conjunct.args[1]), _number_literal(conjunct.args[2])
            if what and low is not None and high is not None:
                checks.append(("since", what, low, high))
    for limit in trigger.limits:
        checks.append(("limit", "trigger:" + trigger.name, limit, None))
    return checks


class _Fired:
    __slots__ = ("history",)

    def __init__(self, history):
        self.history = history


def trigger_guard(program: Program, store) -> Callable | None:
    """When a member could next fire a trigger: ``wake(record, day)``, or None when no guard applies.

    Read from each trigger's top-level conditions: ``days_since(member.X) >= N`` (or ``>``),
    ``between(days_since(member.X), A, B)``, ``STAT over lifetime < N`` (any comparison with a
    number) and its ``limit``s. ``wake(record, day)`` is the first day from ``day`` on which
    every one of some trigger's conditions holds while the member's state stays as it is (None:
    no such day). Those are necessary conditions, so a member whose day has not come cannot
    fire any trigger and the daily run need not evaluate them; the store asks again whenever
    the member changes. None when some trigger has no such condition.
    """
    tz = zoneinfo.ZoneInfo(program.timezone)
    guards = [_checks(t) for t in program.checked.triggers]
    if not guards or not all(guards):
        return None
    one = dt.timedelta(days=1)

    def base(record, what: str) -> dt.date | None:
        if what == "joined":
            return record.member.joined
        value = record.last_purchase if what == "last_purchase" else record.first_purchase
        return None if value is None else value.astimezone(tz).date()

    def reopens(fired, limit, day: dt.date) -> dt.date | None:
        """The first day after ``day`` the limit may allow another firing (None: never)."""
        if limit.period == "member":
            return None
        if limit.period == "rolling":
            dates = sorted((when.astimezone(tz).date() for when in fired), reverse=True)
            return max(day + one, dates[limit.times - 1] + dt.timedelta(days=limit.days))
        return day + one  # a calendar period: ask again tomorrow

    def earliest(record, checks, day: dt.date) -> dt.date | None:
        low, high = day, None
        limits = []
        for kind, a, b, c in checks:
            if kind == "since":
                start = base(record, a)  # a missing date makes the comparison false, as in rules
                if start is None:
                    return None
                low = max(low, start + dt.timedelta(days=int(b)))
                if c is not None:
                    end = start + dt.timedelta(days=int(c))
                    high = end if high is None else min(high, end)
            elif kind == "lifetime":
                if not b(record.lifetime.get(a, ZERO), c):  # a statistic never recorded reads 0, as in rules
                    return None
            else:
                limits.append((a, b))
        for key, limit in limits:
            fired = store.firings(record.member.id, (key,)).get(key)
            if fired and not runtime.limit_ok(
                _Fired({key: fired}), key, low, tz, limit.times, limit.period, limit.days
            ):
                low = reopens(fired, limit, low)
                if low is None:
                    return None
        if high is not None and low > high:
            return None
        return low

    def wake(record, day: dt.date) -> dt.date | None:
        days = [d for checks in guards if (d := earliest(record, checks, day)) is not None]
        return min(days) if days else None

    return wake


# ------------------------------------------------------------------ the replay


class Replay:
    """One program over one history: ``feed`` lines in time order, then ``finish``."""

    def __init__(self, program: Program, keep: dict[str, int] | None = None, point_value: Decimal = Decimal("0.01")):
        self.program = program
        self.tz = zoneinfo.ZoneInfo(program.timezone)
        self.tally = Tally(program, point_value)
        periods = {period for _, period in program_needs(program).caps}
        cap_days = max((CAP_DAYS[p] for p in periods), default=0)
        self.store = MemoryStore(keep, self.tally, cap_days)
        self.store.wake = trigger_guard(program, self.store)
        self.engine = SimEngine(program, self.store)
        self.day: dt.date | None = None  # the local day being replayed; the days before it are run

    def local_day(self, at: dt.datetime) -> dt.date:
        return at.astimezone(self.tz).date()

    def add_members(self, path: str | Path, at: dt.datetime, takes: Callable[[Any], bool] | None = None) -> None:
        """Create the members of a ``loyalty import-members`` file (JSONL or CSV): details, tier, opening balances.

        ``takes(row, or None for a bad row)`` picks the rows this replay takes (all by default).
        """
        tally = self.tally
        for number, row, problem in read_rows(Path(path)):
            if takes is not None and not takes(row if problem is None else None):
                continue
            if problem is None:
                try:
                    import_row(self.engine, {k: v for k, v in row.items() if k not in ("type", "at")}, at)
                    tally.members_loaded += 1
                    continue
                except LoyaltyError as exc:
                    problem = str(exc)
                except ValueError as exc:
                    problem = f"invalid member: {exc}"
            tally.error("members", number, problem)

    def run_until(self, day: dt.date) -> None:
        """Run the daily work of every day before ``day`` not yet run."""
        if self.day is None:
            self.day = day
            self.tally.start(day)
            return
        while self.day < day:
            report = self.engine.run_triggers(self.day)
            self.tally.day_done(self.day, report, self.store)
            self.day += dt.timedelta(days=1)

    def feed(self, number: int, data: Any) -> None:
        tally = self.tally
        try:
            if not isinstance(data, dict):
                raise InputError([("", f"expected a JSON object, got {type(data).__name__}")], "line")
            if data.get("type") == "triggers":  # the replay runs every day itself
                tally.skipped += 1
                return
            at = data.get("at")
            if not at:
                raise InputError([("at", "is required")], str(data.get("type")))
            try:
                when = _datetime(at) if isinstance(at, str) else at
            except (ValueError, TypeError, LoyaltyError) as exc:
                raise InputError([("at", str(exc))], str(data.get("type"))) from None
            day = self.local_day(when)
            self.run_until(day)
            result = dispatch(self.engine, data)
        except LoyaltyError as exc:
            self._read_back(data)
            tally.error("events", number, str(exc), getattr(exc, "code", None))
            return
        except (ValueError, TypeError) as exc:
            self._read_back(data)
            tally.error("events", number, f"invalid line: {exc}")
            return
        if data.get("type") == "redeem_coupon":
            self._read_back(data)
        tally.result(data, result)

    def _read_back(self, data) -> None:
        name = referenced(data)
        if name is not None and not (data.get("type") == "refund" and self.store.get_event(data.get("id")) is not None):
            self.store.reference_done(name)

    def finish(self, until: dt.date | None = None):
        """Run the remaining days (through ``until``, inclusive) and return the figures."""
        if self.day is not None:
            last = until if until is not None else self.day
            self.run_until(last + dt.timedelta(days=1))
        return self.tally.figures(self.store)


def simulate(
    program: Program,
    events: str | Path,
    members: str | Path | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    point_value: Decimal = Decimal("0.01"),
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> dict:
    """Replay ``events`` (and ``members``) through ``program``; returns the figures (see :mod:`.report`).

    With ``jobs`` above 1 the members are split over that many processes (see :mod:`.parallel`);
    the figures are the same, and ``figures["replay"]`` says how the replay ran.
    """
    how = None
    if jobs > 1:
        from .parallel import simulate_split

        figures, how = simulate_split(
            program, events, members, jobs=jobs, start=start, end=end, point_value=point_value, progress=progress
        )
        if figures is not None:
            figures["replay"] = {"processes": jobs, "note": None}
            return figures
    replay = Replay(program, count_references(events), point_value)
    tz = replay.tz
    if members is not None:
        first = start or _first_day(events, tz) or dt.date.today()
        replay.add_members(members, dt.datetime.combine(first, dt.time(0), tz))
    if start is not None:
        replay.run_until(start)
    for number, data, problem in read_history(events):
        if progress is not None:
            progress(number)
        run_line(replay, number, data, problem, start, end)
    figures = replay.finish(end)
    if how is not None:
        figures["replay"] = {"processes": 1, "note": f"replayed in one process: {how}"}
    return figures


def run_line(replay: Replay, number: int, data: Any, problem: str | None, start, end) -> None:
    """One line of the history: counted as bad, as outside ``start``-``end``, or replayed."""
    if problem is not None:
        replay.tally.error("events", number, problem)
        return
    if start is not None or end is not None:
        day = _day_of(data, replay.tz)
        if day is not None and ((start and day < start) or (end and day > end)):
            replay.tally.outside += 1
            return
    replay.feed(number, data)


def _day_of(data, tz) -> dt.date | None:
    try:
        return _datetime(data["at"]).astimezone(tz).date()
    except (KeyError, TypeError, ValueError, LoyaltyError):
        return None


def _first_day(events, tz) -> dt.date | None:
    for _, data, problem in read_history(events):
        if problem is None and isinstance(data, dict) and data.get("at"):
            day = _day_of(data, tz)
            if day is not None:
                return day
    return None
