"""Windowed statistics for the replay: a member's daily statistics and running sums over windows.

A window ("spend over the last 12 months") is a sum of daily rows from a start
day on. As the replay moves forward the start only moves forward too, so each
window keeps a running total and subtracts the rows that fall out, instead of
summing a year of rows for every event; rows older than every window are
dropped. Values are whole 1/10000 units, as the SQLite store keeps them, and
come back as the same Decimals.
"""

from __future__ import annotations

import datetime as dt
from array import array
from decimal import Decimal

from ..store.base import ACTIVITY_STATS

NSTATS = len(ACTIVITY_STATS)
SCALE = Decimal(10000)  # statistics kept as whole 1/10000 units, as the SQLite store keeps them
_ROW = NSTATS + 1  # a row: the day's ordinal and the scaled statistics


def scaled(value: Decimal) -> int:
    return int((value * SCALE).to_integral_value())


class _Tracker:
    """A running sum of a member's daily statistics from ``start`` on (moves forward only)."""

    __slots__ = ("start", "pos", "sums")

    def __init__(self, start: int, pos: int, sums: list[int]):
        self.start = start  # a day ordinal
        self.pos = pos  # the first row inside
        self.sums = sums


class Activity:
    """One member's daily statistics, ordered by day, packed in one array, and the window sums over them."""

    __slots__ = ("rows", "trackers")

    def __init__(self):
        self.rows = array("q")
        self.trackers: list[_Tracker] = []

    def add(self, day: dt.date, values: list[int]) -> None:
        rows = self.rows
        ordinal = day.toordinal()
        i = len(rows) // _ROW
        while i and rows[(i - 1) * _ROW] > ordinal:
            i -= 1
        if i and rows[(i - 1) * _ROW] == ordinal:
            base = (i - 1) * _ROW + 1
            for k in range(NSTATS):
                if values[k]:
                    rows[base + k] += values[k]
        else:
            rows[i * _ROW : i * _ROW] = array("q", [ordinal, *values])
            for t in self.trackers:
                if t.pos > i or (t.pos == i and ordinal < t.start):
                    t.pos += 1
        for t in self.trackers:
            if ordinal >= t.start:
                sums = t.sums
                for k in range(NSTATS):
                    sums[k] += values[k]

    def sums(self, start_day: dt.date) -> list[Decimal]:
        start = start_day.toordinal()
        rows = self.rows
        count = len(rows) // _ROW
        best = None
        for t in self.trackers:
            if t.start <= start and (best is None or t.start > best.start):
                best = t
        if best is None:
            pos = 0
            while pos < count and rows[pos * _ROW] < start:
                pos += 1
            sums = [0] * NSTATS
            for r in range(pos, count):
                base = r * _ROW + 1
                for k in range(NSTATS):
                    sums[k] += rows[base + k]
            best = _Tracker(start, pos, sums)
            self.trackers.append(best)
            if len(self.trackers) > 8:
                self.trackers.pop(0)
        elif best.start < start:
            sums = best.sums
            pos = best.pos
            while pos < count and rows[pos * _ROW] < start:
                base = pos * _ROW + 1
                for k in range(NSTATS):
                    sums[k] -= rows[base + k]
                pos += 1
            best.pos = pos
            best.start = start
            if any(t.start == start and t is not best for t in self.trackers):
                self.trackers = [t for t in self.trackers if t.start != start or t is best]
            self._prune()
        return [Decimal(v) / SCALE for v in best.sums]

    def _prune(self) -> None:
        cut = min(t.pos for t in self.trackers)
        if cut > 16:
            del self.rows[: cut * _ROW]
            for t in self.trackers:
                t.pos -= cut
