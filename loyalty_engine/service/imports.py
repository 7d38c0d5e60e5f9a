"""Migrating members in: ``loyalty import-members FILE`` (JSON lines or CSV).

One member per row::

    {"id": "m-42", "name": "王芳", "joined": "2023-01-10", "birthday": "1990-05-20",
     "email": "...", "phone": "...", "tier": "gold", "tier_since": "2025-03-01",
     "balances": {"points": 1200, "stamps": 4},
     "expires": {"points": "2027-03-31"},
     "qualifying": {"spend": "3400.00", "visits": 12},
     "attributes": {"store": "S1"}}

In CSV the same fields are columns; nested ones are flattened with a dot:
``balances.points``, ``expires.points``, ``qualifying.spend``.

- Opening balances become ``opening`` ledger entries (with their own expiry
  day when given), dated at the import.
- ``qualifying`` totals count as activity on the import day, so they stay in
  tier windows (and statistics) until they age out.
- Idempotent on the member id: a member imported before is left as it is
  (details are updated, balances are not added twice: ``skipped``). A member
  the engine already knows but never imported (one who shopped before the
  import, say) gets the opening state once (``updated``).
- Opening balances count as activity at the import, so ``expire N after last
  activity`` starts counting then.
- A bad row is reported with its line number and nothing of it is written.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field

from ..errors import InputError, LoyaltyError
from ..language.diagnostics import did_you_mean
from ..language.schema import STATS
from ..wire import _date, structure_member, value_map
from .replay import not_utf8, read_lines

ZERO = Decimal(0)
IMPORTED = "import"  # the firing key that records a member's import
MEMBER_KEYS = ("id", "name", "joined", "birthday", "email", "phone", "tier", "attributes")
ROW_KEYS = (*MEMBER_KEYS, "tier_since", "balances", "expires", "qualifying")


@define
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0  # already imported: details updated, balances left alone
    errors: list[tuple[int, str]] = field(factory=list)
    opening: dict[str, Decimal] = field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": [{"line": n, "error": e} for n, e in self.errors],
            "opening": {k: str(v) for k, v in self.opening.items()},
        }


SAVE_AS_UTF8 = ": save the file as UTF-8"


class _NotUtf8(Exception):
    """A CSV line that is not UTF-8: the import stops there (the file was saved in another encoding)."""

    def __init__(self, number: int, exc: UnicodeDecodeError):
        self.number = number
        self.message = not_utf8(exc) + SAVE_AS_UTF8 + " (in Excel: 'CSV UTF-8')"


def _decoded(f) -> Iterator[str]:
    """The lines of a binary file, each decoded on its own (a byte-order mark first is dropped)."""
    for number, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8(number, exc) from None


def read_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, row dict, error) from a .jsonl/.json-lines or .csv file.

    A line that is not UTF-8 is reported as an error; in a CSV file it ends the
    import there (the file was saved in another encoding, so later rows would be wrong too).
    """
    with open(path, "rb") as f:
        if path.suffix.lower() != ".csv":
            yield from _json_rows(f)
            return
        try:
            yield from _csv_rows(_decoded(f))
        except _NotUtf8 as exc:
            yield exc.number, None, exc.message


def _json_rows(lines: Iterable[str | bytes]):
    for number, row, problem in read_lines(lines, SAVE_AS_UTF8):
        yield number, row, problem if problem or isinstance(row, dict) else "expected a JSON object"


def _csv_rows(f: Iterable[str]):
    reader = csv.DictReader(f)
    for row in reader:
        number = reader.line_num
        nested: dict[str, Any] = {}
        for key, value in row.items():
            if key is None or value in (None, ""):
                continue
            head, _, tail = key.strip().partition(".")
            if tail:
                nested.setdefault(head, {})[tail] = value
            else:
                nested[head] = value
        yield number, nested, None


def import_row(engine, row: dict, at: dt.datetime) -> tuple[str, dict[str, Decimal]]:
    """Create or update one member from ``row``; returns (created, updated or skipped, opening balances)."""
    program = engine.program
    unknown = [k for k in row if k not in ROW_KEYS]
    if unknown:  # a misspelt column ("balance.points") would otherwise drop its values without a word
        raise InputError(
            [
                (k, "unknown field; " + (did_you_mean(k, ROW_KEYS) or f"fields are: {', '.join(ROW_KEYS)}"))
                for k in unknown
            ],
            "member",
        )
    member = structure_member(
        {k: v for k, v in row.items() if k in MEMBER_KEYS}, program.checked.schema.member_attributes
    )
    problems: list[tuple[str, str]] = []
    balances = value_map(row.get("balances"), "balances", problems)
    expires = value_map(row.get("expires"), "expires", problems, _date)
    qualifying = value_map(row.get("qualifying"), "qualifying", problems)
    problems += [
        (f"balances.{b}", f"'{b}' is not a balance of this program")
        for b in balances
        if b not in program.checked.balances
    ]
    problems += [(f"balances.{b}", f"must be >= 0 (got {a})") for b, a in balances.items() if a < 0]
    problems += [
        (f"balances.{b}", f"{b} are whole numbers (got {a})")
        for b, a in balances.items()
        if b in program.checked.balances and not program.checked.balances[b].money and a != a.to_integral_value()
    ]
    problems += [(f"qualifying.{s}", f"'{s}' is not a statistic") for s in qualifying if s not in STATS]
    problems += [(f"qualifying.{s}", f"must be >= 0 (got {v})") for s, v in qualifying.items() if v < 0]
    tiers = program.checked.tiers
    names = [lvl.name.name for lvl in tiers.levels] if tiers else []
    if member.tier is not None and member.tier not in names:
        problems.append(
            ("tier", f"'{member.tier}' is not a tier of this program" + (f" ({', '.join(names)})" if names else ""))
        )
    tier_since = None
    if row.get("tier_since"):
        try:
            tier_since = dt.date.fromisoformat(str(row["tier_since"]))
        except ValueError:
            problems.append(("tier_since", f"{row['tier_since']!r} is not a date (YYYY-MM-DD)"))
    if problems:
        raise InputError(problems, "member")
    store = engine.store
    with store.transaction():
        source = f"import:{member.id}"
        record = store.load_member(member.id)
        if record is not None:
            tier_before = record.member.tier
            record.member = attrs.evolve(
                member, tier=member.tier or record.member.tier, joined=member.joined or record.member.joined
            )
            store.save_member(record)
            already = IMPORTED in store.firings(member.id, [IMPORTED]) or any(
                e.kind == "opening" for e in store.entries_for_event(source, member.id)
            )
            if already:
                return "skipped", {}
            outcome = "updated"  # known (e.g. shopped before the import) but not imported yet: add the opening state
            if member.tier == tier_before:
                member = attrs.evolve(member, tier=None)  # the tier it holds: keep its dates
        else:
            record = engine.new_record(member, at)
            outcome = "created"
        if member.tier is not None:
            engine.place_in_tier(record, member.tier, tier_since or engine.local_day(at), engine.local_day(at))
        store.save_member(record)
        for balance, amount in balances.items():
            if amount:
                engine.ledger.post(
                    record,
                    balance,
                    "opening",
                    amount,
                    at,
                    event=source,
                    reason="opening balance",
                    expires_on=expires.get(balance),
                )
        if qualifying:
            engine.applier.add_stats(record, engine.local_day(at), source, qualifying, None)
        if any(balances.values()) and record.last_activity is None:
            record.last_activity = at  # "expire N after last activity" counts from the import
        store.add_firing(member.id, IMPORTED, at, source)  # marks the member imported: a re-import adds nothing
        store.save_member(record)
        return outcome, balances


def import_members(engine, path: str | Path, at: dt.datetime | None = None) -> ImportReport:
    at = engine.when(at)
    report = ImportReport()
    for number, row, problem in read_rows(Path(path)):
        report.rows += 1
        if problem is None:
            try:
                outcome, opening = import_row(engine, row, at)
            except LoyaltyError as exc:
                problem = str(exc)
            except ValueError as exc:
                problem = f"invalid member: {exc}"
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
                for balance, amount in opening.items():
                    report.opening[balance] = report.opening.get(balance, ZERO) + amount
        if problem is not None:
            report.errors.append((number, problem))
    return report
