"""Replaying a history file (JSON lines) through an engine: what ``loyalty run`` does.

Each line is one JSON object. Its ``type`` decides what happens:

- an event type of the program (``purchase``, ``refund``, ``signup``,
  ``visit`` or a custom one): :meth:`Engine.process`;
- ``redeem``: ``{"id", "member", "points", ["balance"], ["at"]}``;
- ``adjust``: ``{"id", "member", "points", "reason", ["balance"], ["at"]}``;
- ``transfer``: ``{"id", "member", "to", "points", ["balance"], ["at"]}``;
- ``redeem_coupon``: ``{"id", "code", "purchase"}`` where ``purchase`` is the
  basket (an event object) or the id of a processed purchase; instead of a
  ``code``, ``"member"`` and ``"template"`` pick the member's oldest usable
  coupon of that template;
- ``member``: a member's details (created or updated);
- ``triggers``: ``{"at": "2026-05-03"}`` runs the day's expiry, tier review
  and triggers.

Every line is idempotent on its id, so a file can be run again (after a crash,
say) and only what is missing is applied.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from attrs import define, field

from ..errors import ConflictError, InputError, LoyaltyError, RefusedError, StoreError
from ..wire import _datetime
from .results import Result

OPERATIONS = ("redeem", "adjust", "transfer", "redeem_coupon", "member", "triggers")


@define
class RunReport:
    lines: int = 0
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    refused: int = 0
    errors: list[tuple[int, str]] = field(factory=list)
    kinds: Counter = field(factory=Counter)
    totals: dict[str, Decimal] = field(factory=dict)
    coupons: int = 0
    messages: int = 0
    stopped_at: int | None = None
    storage_failed: bool = False  # the run stopped on a store error: rerun the file to resume

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "parked": self.parked,
            "refused": self.refused,
            "errors": [{"line": n, "error": e} for n, e in self.errors],
            "kinds": dict(self.kinds),
            "totals": {k: str(v) for k, v in self.totals.items()},
            "coupons": self.coupons,
            "messages": self.messages,
            "stopped_at": self.stopped_at,
            "storage_failed": self.storage_failed,
        }


def _require(data: dict, *names: str) -> None:
    missing = [(n, "is required") for n in names if data.get(n) in (None, "")]
    if missing:
        raise InputError(missing, str(data.get("type")))


def _at(data: dict) -> dt.datetime | None:
    return _datetime(data["at"]) if data.get("at") else None


def dispatch(engine, data: Any):
    """Apply one history line; returns a Result (or a report for ``triggers``/``member``)."""
    if not isinstance(data, dict):
        raise InputError([("", f"expected a JSON object, got {type(data).__name__}")], "line")
    kind = data.get("type")
    balance = data.get("balance", "points")
    if kind == "redeem":
        _require(data, "id", "member", "points")
        return engine.redeem_points(data["member"], data["points"], data["id"], balance, _at(data))
    if kind == "adjust":
        _require(data, "id", "member", "points", "reason")
        return engine.adjust(data["member"], data["points"], data["reason"], data["id"], balance, _at(data))
    if kind == "transfer":
        _require(data, "id", "member", "to", "points")
        return engine.transfer(data["member"], data["to"], data["points"], data["id"], balance, _at(data))
    if kind == "redeem_coupon":
        _require(data, "id", "purchase")
        if not data.get("code"):
            _require(data, "member", "template")
        return engine.redeem_coupon(
            data.get("code"),
            data["purchase"],
            reference=data["id"],
            checkout=data.get("checkout"),
            template=data.get("template"),
            member=data.get("member"),
        )
    if kind == "member":
        fields = {k: v for k, v in data.items() if k not in ("type", "at")}
        return engine.upsert_member(fields, _at(data))
    if kind == "triggers":
        _require(data, "at")
        text = str(data["at"])
        as_of = dt.date.fromisoformat(text) if len(text) == 10 else _datetime(text)
        return engine.run_triggers(as_of)
    return engine.process(data)


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What is wrong with a line that is not UTF-8."""
    return f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"


def read_lines(lines: Iterable[str | bytes], advice: str = "") -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed JSON or None, error) for each non-blank line (``#`` comments skipped).

    Lines may be bytes (a file opened in binary): each is decoded on its own, so
    a line that is not UTF-8 is reported with its number (and ``advice``) instead of ending the run.
    """
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, not_utf8(exc) + advice
                continue
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield number, json.loads(text), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON: {exc.msg} (column {exc.colno})"


def run_lines(
    engine,
    lines: Iterable[str | bytes],
    *,
    stop_on_error: bool = False,
    batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> RunReport:
    """Apply each line in order. ``batch`` > 1 commits that many lines together (each still all-or-nothing)."""
    report = RunReport()
    pending = 0
    store = engine.store
    batch_cm = None
    try:
        for number, data, problem in read_lines(lines):
            report.lines += 1
            if batch > 1 and batch_cm is None:
                batch_cm = store.batch()
                batch_cm.__enter__()
            if problem is None:
                try:
                    problem = _apply_line(engine, data, report)
                except StoreError as exc:
                    report.errors.append((number, str(exc)))
                    report.stopped_at = number
                    report.storage_failed = True
                    if batch_cm is not None:
                        batch_cm.__exit__(type(exc), exc, exc.__traceback__)
                        batch_cm = None
                    break
            if problem is not None:
                report.errors.append((number, problem))
                if stop_on_error:
                    report.stopped_at = number
                    break
            pending += 1
            if batch_cm is not None and pending >= batch:
                batch_cm.__exit__(None, None, None)
                batch_cm = None
                pending = 0
            if progress is not None:
                progress(1)
    except BaseException as exc:
        if batch_cm is not None:
            batch_cm.__exit__(type(exc), exc, exc.__traceback__)
            batch_cm = None
        raise
    finally:
        if batch_cm is not None:
            batch_cm.__exit__(None, None, None)
    return report


def _apply_line(engine, data, report: RunReport) -> str | None:
    try:
        result = dispatch(engine, data)
    except RefusedError as exc:
        report.refused += 1
        return f"refused ({exc.code}): {exc.reason}"
    except (InputError, ConflictError) as exc:
        return str(exc)
    except StoreError:
        raise  # the store itself failed: stop here (what was committed stays; a rerun resumes)
    except LoyaltyError as exc:
        return f"{type(exc).__name__}: {exc}"
    except ValueError as exc:  # a malformed date or number in an operation line
        return f"invalid {data.get('type')}: {exc}"
    kind = data.get("type")
    report.kinds[kind] += 1
    if not isinstance(result, Result):  # a member update or a day of triggers
        if getattr(result, "already_done", False):
            report.duplicates += 1
        else:
            report.applied += 1
            report.coupons += getattr(result, "coupons", 0)
            report.messages += getattr(result, "messages", 0)
        return None
    if result.duplicate:
        report.duplicates += 1
    elif result.status == "parked":
        report.parked += 1
    else:
        report.applied += 1
        for balance, amount in result.totals.items():
            report.totals[balance] = report.totals.get(balance, Decimal(0)) + amount
        report.coupons += len(result.coupons)
        report.messages += result.messages
    return None
