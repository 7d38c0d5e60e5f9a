"""Replaying one history in several processes, each with its share of the members.

In a replay the members are independent of each other, with three exceptions that this module
checks for, so that the figures are exactly those of one process:

- **what the program counts across members**: a budget (``budget 2000 coupons``) and a coupon's
  total (``limit 5000 total``). Each process keeps its own counts; when their sum could have
  reached a limit, one process would have refused or cut an award the split replay granted;
- **lines that touch two members**: a points transfer, a coupon redemption that does not name
  its member, a refund or coupon redemption whose member is not its purchase's;
- **a platform without fork**, where the processes could not share the loaded program.

In those cases the history is replayed again in one process and the figures say why
(``figures["parallel"]``). Every process reads the whole file (each line's member decides whose
it is; lines without one belong to the first process, which also reports them) and runs every
day, so the days, the snapshots and the line numbers are the same as in one replay.
Plugins must not share state between members either (the built-in ones do not).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import traceback
import zlib
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ..program import Program
from .replay import Replay, _day_of, _first_day, count_references, read_history, referenced, run_line
from .report import Tally, member_summaries

ZERO = Decimal(0)
PROGRESS_EVERY = 2_000  # lines between two reports (progress, program-wide counts) of each process


def shard_of(member: str, jobs: int) -> int:
    """Which of ``jobs`` processes replays ``member`` (stable across runs and machines)."""
    return zlib.crc32(member.encode("utf-8", "surrogatepass")) % jobs


def member_of(data: Any, field: str | None = None) -> str | None:
    """The member whose state a history line (or, with ``field="id"``, a members-file row) changes, or None."""
    if not isinstance(data, dict):
        return None
    member = data.get(field or ("id" if data.get("type") == "member" else "member"))
    return member if isinstance(member, str) and member else None


def limits(program: Program) -> tuple[dict[str, Decimal], dict[str, int]]:
    """The program-wide counts a split replay must check: budgets by key, coupon totals by template."""
    budgets: dict[str, Decimal] = {}
    plans = list(program.code.events.values())
    if program.code.triggers is not None:
        plans.append(program.code.triggers)
    for plan_set in plans:
        for plan in plan_set.rules:
            for key, amount, _unit in plan.budgets:
                budgets[key] = Decimal(amount)
    totals = {code: t.total for code, t in program.checked.coupons.items() if t.total is not None}
    return budgets, totals


class _Crossing:
    """Finds the lines that touch two members' state (seen by the first process, which reads every line)."""

    def __init__(self, keep: dict[str, int]):
        self.keep = keep
        self.reason: str | None = None
        self.purchase_member: dict[str, str | None] = {}
        self.readers: list[tuple[int, str, str | None]] = []

    def see(self, number: int, data: Any) -> None:
        if self.reason is not None or not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "transfer":
            self.reason = f"line {number} transfers points between members"
        elif kind == "redeem_coupon" and member_of(data) is None:
            self.reason = f"line {number} redeems a coupon without naming its member"
        elif (name := referenced(data)) is not None:
            self.readers.append((number, name, member_of(data)))
        elif isinstance(name := data.get("id"), str) and name in self.keep:
            self.purchase_member.setdefault(name, member_of(data))

    def result(self) -> str | None:
        if self.reason is None:
            for number, name, member in self.readers:
                if name in self.purchase_member and self.purchase_member[name] != member:
                    return f"line {number} reads back a purchase of another member"
        return self.reason


def _worker(conn, program: Program, keep, events, members, start, end, day0, members_at, point_value, shard, jobs):
    try:
        replay = Replay(program, dict(keep), point_value)
        store = replay.store
        peaks: dict[str, Decimal] = {}
        add_budget = store.add_budget

        def tracked(key: str, amount: Decimal) -> None:  # the highest each budget reached in this process
            add_budget(key, amount)
            peaks[key] = max(peaks.get(key, ZERO), store.budget[key])

        store.add_budget = tracked

        def owns(member: str | None) -> bool:
            return shard == 0 if member is None else shard_of(member, jobs) == shard

        if members is not None:
            replay.add_members(members, members_at, lambda row: owns(member_of(row, "id")))
        if day0 is not None:
            replay.run_until(day0)
        crossing = _Crossing(keep) if shard == 0 else None
        budgets, totals = limits(program)
        counted = bool(budgets or totals)
        for seen, (number, data, problem) in enumerate(read_history(events), start=1):
            if crossing is not None and crossing.reason is None:
                crossing.see(number, data)
                if crossing.reason is not None:  # no use going on: one process will replay it all
                    conn.send(("stop", crossing.reason))
            if owns(member_of(data) if problem is None else None):
                run_line(replay, number, data, problem, start, end)
            if seen % PROGRESS_EVERY == 0:
                if shard == 0:
                    conn.send(("progress", number))
                if counted:
                    conn.send(("counts", (dict(peaks), {t: store.per_template.get(t, 0) for t in totals})))
        conn.send(("day", replay.day))
        until = conn.recv()
        if replay.day is not None and until is not None:
            replay.run_until(until + dt.timedelta(days=1))
        replay.tally.close(store)
        found = crossing.result() if crossing is not None else None
        conn.send(("done", (replay.tally.state(), member_summaries(store), peaks, dict(store.per_template), found)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send(("raise", exc))  # the same error as one process would raise (a file not UTF-8, ...)
        except Exception:  # noqa: BLE001 - it does not pickle: its text, then
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def simulate_split(
    program: Program,
    events: str | Path,
    members: str | Path | None,
    *,
    jobs: int,
    start: dt.date | None = None,
    end: dt.date | None = None,
    point_value: Decimal = Decimal("0.01"),
    progress: Callable[[int], None] | None = None,
) -> tuple[dict | None, str]:
    """Replay in ``jobs`` processes: ``(figures, how)``, or ``(None, why not)`` when one process must do it."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None, "this platform cannot fork the processes"
    tz = zoneinfo.ZoneInfo(program.timezone)
    keep = count_references(events)
    members_at = dt.datetime.combine(start or _first_day(events, tz) or dt.date.today(), dt.time(0), tz)
    day0 = start or _first_fed_day(events, tz, end)
    context = multiprocessing.get_context("fork")
    conns, procs = [], []
    for shard in range(jobs):
        parent, child = context.Pipe()
        args = (child, program, keep, events, members, start, end, day0, members_at, point_value, shard, jobs)
        proc = context.Process(target=_worker, args=args, daemon=True)
        proc.start()
        child.close()
        conns.append(parent)
        procs.append(proc)
    watch = _Limits(program, jobs)
    finished = False
    try:
        days = _collect(conns, "day", progress, watch)
        last = max((d for d in days if d is not None), default=None)
        for conn in conns:
            conn.send(end if end is not None else last)
        results = _collect(conns, "done", progress, watch)
        finished = True
    except _Unsplittable as exc:
        return None, str(exc)
    finally:
        for proc in procs:
            if not finished:  # stopped early (or failed): the others need not go on
                proc.kill()
            proc.join(timeout=10)
        for conn in conns:
            conn.close()
    tally = Tally(program, point_value)
    summaries: dict[str, tuple] = {}
    for shard, (state, theirs, their_peaks, their_counts, found) in enumerate(results):
        if found is not None:
            return None, found
        watch.update(shard, their_peaks, their_counts)
        tally.absorb(state)
        summaries.update(theirs)
    try:
        watch.check()
    except _Unsplittable as exc:
        return None, str(exc)
    return tally.summary(summaries), f"{jobs} processes"


class _Unsplittable(Exception):
    """Why the history must be replayed in one process, found while the processes ran."""


class _Limits:
    """The program-wide counts of every process, added up.

    A process's count is the highest its budget reached (refunds give budget back) or how many coupons of a
    template it issued. While their sum stays within the limit, one process would never have refused or cut
    an award either (its count was never above the sum); past it, it might have.
    """

    def __init__(self, program: Program, jobs: int):
        self.budgets, self.totals = limits(program)
        self.peaks: list[dict[str, Decimal]] = [{} for _ in range(jobs)]
        self.counts: list[dict[str, int]] = [{} for _ in range(jobs)]

    def update(self, shard: int, peaks: dict[str, Decimal], counts: dict[str, int]) -> None:
        self.peaks[shard], self.counts[shard] = peaks, counts

    def check(self) -> None:
        for key, amount in self.budgets.items():
            if sum((p.get(key, ZERO) for p in self.peaks), ZERO) > amount:
                kind, _, name = key.partition(":")
                what = f"the budget of {kind} '{name}'" if name else f"budget {key}"
                raise _Unsplittable(f"{what} could have run out")
        for code, total in self.totals.items():
            if sum(c.get(code, 0) for c in self.counts) > total:
                raise _Unsplittable(f"coupon {code} could have reached its total of {total}")


def _collect(conns, wanted: str, progress, watch: _Limits) -> list:
    """One ``wanted`` message from every process (in process order), passing progress reports on and
    stopping as soon as the processes' counts together could have reached a program-wide limit."""
    got: dict[int, Any] = {}
    index = {id(c): i for i, c in enumerate(conns)}
    while len(got) < len(conns):
        for conn in wait([c for c in conns if index[id(c)] not in got]):
            try:
                kind, value = conn.recv()
            except EOFError:
                raise RuntimeError("a replay process ended without its figures") from None
            if kind == "progress":
                if progress is not None:
                    progress(value)
            elif kind == "counts":
                watch.update(index[id(conn)], *value)
                watch.check()
            elif kind == "stop":
                raise _Unsplittable(value)
            elif kind == "raise":
                raise value
            elif kind == "error":
                raise RuntimeError(f"a replay process failed:\n{value}")
            elif kind == wanted:
                got[index[id(conn)]] = value
    return [got[i] for i in range(len(conns))]


def _first_fed_day(events, tz, end: dt.date | None) -> dt.date | None:
    """The day one replay starts its days on: that of the first line it replays (not a bad line, not a
    'triggers' line, not after ``end``)."""
    for _, data, problem in read_history(events):
        if problem is not None or not isinstance(data, dict) or data.get("type") == "triggers" or not data.get("at"):
            continue
        day = _day_of(data, tz)
        if day is not None and (end is None or day <= end):
            return day
    return None
