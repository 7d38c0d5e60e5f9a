"""The embedded default store: one SQLite file, schema by sqlite-utils, hot path on the raw connection.

Settings that matter (see docs/store.md):

- WAL journal, ``busy_timeout`` (default 5 s), foreign keys on;
- every write transaction starts with ``BEGIN IMMEDIATE``, so a writer waits
  for the lock up front instead of failing half-way ("database is locked"
  from an upgraded deferred transaction ignores the busy timeout);
- ``synchronous=FULL`` by default (a commit survives power loss); ``NORMAL``
  is allowed and survives application crashes but may lose the last commits
  on power loss.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import StoreError
from ..model import Member
from . import filters as pf
from .base import (
    ACTIVITY_STATS,
    CouponRecord,
    LedgerEntry,
    Lot,
    MemberRecord,
    Message,
    RewardEntry,
    StoredEvent,
    chunks,
    from_date,
    from_datetime,
    iso,
)
from .migrations import migrate

_MEMBER_NAMES = [
    "id",
    "name",
    "joined",
    "birthday",
    "email",
    "phone",
    "attributes",
    "tier",
    "tier_since",
    "tier_review",
    "grace_until",
    "first_purchase",
    "last_purchase",
    "last_activity",
    "balances",
    "debts",
    "lifetime",
    "created_at",
]
_MEMBER_SET = ", ".join(f"{name} = ?" for name in _MEMBER_NAMES[1:])
_ZERO = Decimal(0)
SCALE = Decimal(10000)  # activity statistics are stored in 1/10000 units
_STAT_INDEX = {name: i for i, name in enumerate(ACTIVITY_STATS)}
_DATE, _DATETIME = dt.date.fromisoformat, dt.datetime.fromisoformat
SYNCHRONOUS = ("FULL", "NORMAL")
_MEMBER_COLUMNS = ", ".join(_MEMBER_NAMES)
_MEMBER_MARKS = ", ".join("?" * len(_MEMBER_NAMES))


# The maps are flat JSON objects we wrote ourselves: the scanner alone, without json.loads' wrappers.
_scan_json = json.JSONDecoder().scan_once


# SQLite must not be used through a connection opened before a fork (a pre-loading web server, a process
# pool): it can corrupt the file. Right after a fork the child gives each open store a connection of its own;
# the inherited ones stay referenced, never closed (and finalized) in the child, where closing could act on
# the parent's behalf.
_OPEN_STORES: weakref.WeakSet = weakref.WeakSet()
_INHERITED: list = []


def _reconnect_after_fork() -> None:
    for store in list(_OPEN_STORES):
        store._after_fork()


class _Unopenable:
    """The connection of a store that could not be opened again after a fork: any use says why."""

    def __init__(self, reason: str):
        self.reason = reason

    def __getattr__(self, name):
        raise StoreError(self.reason)


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_reconnect_after_fork)


def _dec_map(text: str | None) -> dict[str, Decimal]:
    if not text or text == "{}":
        return {}
    try:
        values = _scan_json(text, 0)[0]
    except StopIteration:  # not written by this store (leading space, say): the full parser
        values = json.loads(text)
    return {k: Decimal(v) for k, v in values.items()}


# Built once: json.dumps with options builds a new encoder on every call.
_MAP_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_ATTRIBUTES_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


def _enc_map(values: dict[str, Decimal]) -> str:
    if not values:
        return "{}"
    kept = {k: str(v) for k, v in values.items() if v}
    return _MAP_JSON.encode(kept) if kept else "{}"


def _enc_weights(weights) -> str | None:
    if weights is None:
        return None
    return '["' + '","'.join(map(str, weights)) + '"]' if weights else "[]"


def _dec_weights(text: str | None) -> tuple[Decimal, ...] | None:
    return None if text is None else tuple(Decimal(w) for w in json.loads(text))


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _scaled(value: Decimal) -> int:
    return int((Decimal(value) * SCALE).to_integral_value())


# ------------------------------------------------------------------ member filters as SQL (service.prefilter)

_DATE_COLUMNS = {
    "joined": "joined",
    "birthday": "birthday",
    "tier_since": "tier_since",
    "tier_expires": "COALESCE(grace_until, tier_review)",
    "last_purchase": "last_purchase",
    "first_purchase": "first_purchase",
}


def _predicate_sql(p) -> tuple[str, list]:
    """SQL over the ``members`` row for a prefilter predicate (dates are ISO text; timestamps carry offsets)."""
    if isinstance(p, pf.AllOf | pf.AnyOf):
        if not p.parts:
            return ("1" if isinstance(p, pf.AllOf) else "0"), []
        parts = [_predicate_sql(part) for part in p.parts]
        joiner = " AND " if isinstance(p, pf.AllOf) else " OR "
        return joiner.join(f"({sql})" for sql, _ in parts), [v for _, values in parts for v in values]
    if isinstance(p, pf.DateRange):
        column = _DATE_COLUMNS[p.fact]
        if p.timestamp:  # a timestamp's local date is within a day of its UTC date: a day of slack either side
            low, high = f"julianday({column}) >= julianday(?) - 1", f"julianday({column}) < julianday(?) + 2"
        else:  # ISO dates compare as text
            low, high = f"{column} >= ?", f"{column} <= ?"
        bounds = [(sql, day.isoformat()) for sql, day in ((low, p.low), (high, p.high)) if day is not None]
        return " AND ".join([f"{column} IS NOT NULL", *(sql for sql, _ in bounds)]), [v for _, v in bounds]
    if isinstance(p, pf.TierIn):
        return f"tier IN ({', '.join('?' * len(p.tiers))})", list(p.tiers)
    if isinstance(p, pf.BirthdayOn):
        return f"substr(birthday, 6, 5) IN ({', '.join('?' * len(p.days))})", list(p.days)
    if isinstance(p, pf.ExpiringBy):
        return (
            "EXISTS (SELECT 1 FROM lots WHERE lots.member = members.id AND lots.balance = ? AND lots.open = 1 "
            "AND lots.expires_on IS NOT NULL AND lots.expires_on <= ?)",
            [p.balance, p.day.isoformat()],
        )
    raise TypeError(f"not a member filter predicate: {p!r}")  # pragma: no cover


class SQLiteStore:
    """A :class:`~loyalty_engine.store.base.Store` on one SQLite file (or ``":memory:"``).

    One store object holds one connection: use one per thread or process.
    """

    def __init__(
        self,
        path: str | Path = "loyalty.db",
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        wal_autocheckpoint: int = 10000,
    ):
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)} (got {synchronous!r})")
        if busy_timeout < 5:
            raise ValueError(f"busy_timeout must be at least 5 seconds (got {busy_timeout})")
        self.path = str(path)
        self.synchronous = synchronous
        self._settings = (busy_timeout, wal_autocheckpoint)
        self._connect()
        self._retry_locked(lambda: migrate(self.db))
        if self.path != ":memory:":  # a forked in-memory database is the child's own
            _OPEN_STORES.add(self)

    def _connect(self) -> None:
        busy_timeout, wal_autocheckpoint = self._settings
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if self.path != ":memory:":
            self._retry_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Checkpoint every ~40 MB of WAL instead of 4 MB: each event writes ~15 pages, and
        # fewer, larger checkpoints write a page touched by many events once. Durability is unchanged.
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {wal_autocheckpoint}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(self.conn)
        self._depth = 0
        self._savepoints = 0

    def _after_fork(self) -> None:
        """In a forked child: a connection of its own (see _reconnect_after_fork). Never creates the file."""
        _INHERITED.append(self.conn)
        try:
            if not os.path.exists(self.path):
                raise StoreError("the file no longer exists")
            self._connect()
        except (StoreError, sqlite3.Error) as exc:
            self.conn = _Unopenable(f"{self.path}: cannot open the database again in a forked process: {exc}")

    @staticmethod
    def _retry_locked(fn, attempts: int = 50):
        for n in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or n == attempts - 1:
                    raise
                time.sleep(0.05)
        return None  # pragma: no cover

    # -------------------------------------------------------------- transactions

    @contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; inside a batch or another transaction, a savepoint.

        Any SQLite error inside (disk full, read-only file, interrupted...) rolls the
        transaction (or the savepoint) back and surfaces as :class:`StoreError`.
        """
        if self._depth:
            yield from self._savepoint()
            return
        self._begin()
        self._depth = 1
        try:
            yield self
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"{self.path}: {exc}; the transaction was rolled back, nothing of it was written"
                ) from exc
            raise
        else:
            self._commit()
        finally:
            self._depth = 0

    def _savepoint(self):
        if not self.conn.in_transaction:  # SQLite rolled the enclosing transaction back (e.g. disk full)
            raise StoreError(
                f"{self.path}: the enclosing transaction was lost; nothing after its last commit was written"
            )
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self
        except BaseException as exc:
            if self.conn.in_transaction:  # otherwise SQLite already rolled everything back: nothing to undo
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {exc}; this step was rolled back") from exc
            raise
        else:
            try:
                self.conn.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc
        finally:
            self._depth -= 1

    batch = transaction

    def _begin(self) -> None:
        try:
            try:
                self.conn.execute("BEGIN IMMEDIATE")  # waits up to busy_timeout for the write lock
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                self._retry_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            self._rollback()  # BEGIN may have opened the transaction before failing (interrupted loading the schema)
            raise StoreError(f"cannot start a write transaction on {self.path}: {exc}") from exc

    def _commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"commit failed on {self.path}, nothing was written: {exc}") from exc

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (e.g. disk full)
                self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def close(self) -> None:
        _OPEN_STORES.discard(self)
        self.conn.close()

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # -------------------------------------------------------------- programs

    def ensure_program(self, version: str, name: str, sources: dict[str, str]) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO programs (version, name, sources, first_used) VALUES (?, ?, ?, ?)",
            (version, name, json.dumps(sources, ensure_ascii=False), dt.datetime.now(dt.UTC).isoformat()),
        )

    def latest_program(self) -> tuple[str, dict[str, str]] | None:
        """(version, {path: text}) of the program this database was last opened with (main file first)."""
        row = self.conn.execute(
            "SELECT version, sources FROM programs ORDER BY first_used DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def top_earners(self, balance: str = "points", limit: int = 5) -> list[tuple[str, str | None, Decimal]]:
        """(member, name, earned) of the members who earned most of ``balance``."""
        earned: dict[str, Decimal] = {}
        for member, amount in self.conn.execute(
            "SELECT member, amount FROM ledger WHERE balance = ? AND kind = 'earn'", (balance,)
        ):
            earned[member] = earned.get(member, Decimal(0)) + Decimal(amount)
        top = sorted(earned.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        names = {m: self.conn.execute("SELECT name FROM members WHERE id = ?", (m,)).fetchone()[0] for m, _ in top}
        return [(m, names[m], v) for m, v in top]

    def program_sources(self, version: str) -> dict[str, str] | None:
        row = self.conn.execute("SELECT sources FROM programs WHERE version = ?", (version,)).fetchone()
        return json.loads(row[0]) if row else None

    # -------------------------------------------------------------- events

    def get_event(self, event_id: str) -> StoredEvent | None:
        row = self.conn.execute(
            "SELECT id, kind, member, hash, at, status, payload, outcome, program, original FROM events WHERE id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredEvent(row[0], row[1], row[2], row[3], from_datetime(row[4]), *row[5:])

    def put_event(self, event: StoredEvent) -> None:
        self.conn.execute(
            "INSERT INTO events (id, kind, member, hash, at, status, original, payload, outcome, program, "
            "processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "status = excluded.status, outcome = excluded.outcome, program = excluded.program, "
            "processed_at = excluded.processed_at",
            (
                event.id,
                event.kind,
                event.member,
                event.hash,
                iso(event.at),
                event.status,
                event.original,
                event.payload,
                event.outcome,
                event.program,
                dt.datetime.now(dt.UTC).isoformat(),
            ),
        )

    def parked_refunds(self, original: str) -> list[StoredEvent]:
        rows = self.conn.execute(
            "SELECT id FROM events WHERE original = ? AND status = 'parked' ORDER BY seq", (original,)
        )
        return [e for (i,) in rows.fetchall() if (e := self.get_event(i)) is not None]

    def events(self, kind: str | None = None) -> Iterable[StoredEvent]:
        """Processed events in the order they were settled (a parked refund: when it was applied)."""
        sql = "SELECT id FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY processed_at, seq"
        for (event_id,) in self.conn.execute(sql, (kind,) if kind else ()).fetchall():
            event = self.get_event(event_id)
            if event is not None:
                yield event

    # -------------------------------------------------------------- members

    def _member(self, row) -> MemberRecord:
        day, moment = _DATE, _DATETIME
        (_, name, joined, birthday, email, phone, attributes, tier, since, review, grace) = row[:11]
        first, last, active, balances, debts, lifetime, created = row[11:]
        member = Member(
            row[0],
            name,
            None if joined is None else day(joined),
            None if birthday is None else day(birthday),
            tier,
            email,
            phone,
            json.loads(attributes) if attributes and attributes != "{}" else {},
        )
        balances, debts, lifetime = _dec_map(balances), _dec_map(debts), _dec_map(lifetime)
        return MemberRecord(
            member,
            None if created is None else moment(created),
            None if since is None else day(since),
            None if review is None else day(review),
            None if grace is None else day(grace),
            None if first is None else moment(first),
            None if last is None else moment(last),
            None if active is None else moment(active),
            balances,
            debts,
            lifetime,
            True,
            tuple(row),
            (member, dict(balances), dict(debts), dict(lifetime)),
        )

    def load_member(self, member_id: str) -> MemberRecord | None:
        row = self.conn.execute(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id = ?", (member_id,)).fetchone()
        return None if row is None else self._member(row)

    def save_member(self, record: MemberRecord) -> None:
        m = record.member
        loaded, snapshot = record.loaded, record.snapshot
        # encode only what may have changed: the member's details are one frozen object, the maps dicts
        same = loaded is not None and snapshot is not None and record.stored
        values = (
            *(loaded[:8] if same and m is snapshot[0] else self._member_head(m)),
            iso(record.tier_since),
            iso(record.tier_review),
            iso(record.grace_until),
            iso(record.first_purchase),
            iso(record.last_purchase),
            iso(record.last_activity),
            loaded[14] if same and record.balances == snapshot[1] else _enc_map(record.balances),
            loaded[15] if same and record.debts == snapshot[2] else _enc_map(record.debts),
            loaded[16] if same and record.lifetime == snapshot[3] else _enc_map(record.lifetime),
            iso(record.created_at),
        )
        if not record.stored:
            self.conn.execute(f"INSERT INTO members ({_MEMBER_COLUMNS}) VALUES ({_MEMBER_MARKS})", values)
            record.stored = True
        elif loaded is None:
            self.conn.execute(f"UPDATE members SET {_MEMBER_SET} WHERE id = ?", values[1:] + (m.id,))
        else:  # only the columns that changed: fewer index updates, fewer pages written
            changed = [i for i in range(1, len(values)) if values[i] != loaded[i]]
            if changed:
                sets = ", ".join(f"{_MEMBER_NAMES[i]} = ?" for i in changed)
                self.conn.execute(f"UPDATE members SET {sets} WHERE id = ?", (*(values[i] for i in changed), m.id))
        record.loaded = values
        record.snapshot = (m, dict(record.balances), dict(record.debts), dict(record.lifetime))

    @staticmethod
    def _member_head(m: Member) -> tuple:
        return (
            m.id,
            m.name,
            iso(m.joined),
            iso(m.birthday),
            m.email,
            m.phone,
            _ATTRIBUTES_JSON.encode(dict(m.attributes)) if m.attributes else "{}",
            m.tier,
        )

    def iter_members(self, after: str | None, limit: int) -> list[MemberRecord]:
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id > ? ORDER BY id LIMIT ?", (after or "", limit)
        ).fetchall()
        return [self._member(r) for r in rows]

    def iter_members_matching(self, member_filter, after: str | None, limit: int) -> list[MemberRecord]:
        """Like :meth:`iter_members`, only the members a day's triggers can fire for (see ``service.prefilter``)."""
        if member_filter.nobody:
            return []
        where, params = _predicate_sql(member_filter.candidates)
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id > ? AND ({where}) ORDER BY id LIMIT ?",
            (after or "", *params, limit),
        ).fetchall()
        return [self._member(r) for r in rows]

    def members_inactive_since(self, cutoff: dt.datetime, after: str | None, limit: int) -> list[str]:
        """Members with a balance whose last activity is before ``cutoff`` (a chunked scan: a daily job)."""
        rows = self.conn.execute(
            "SELECT id FROM members WHERE id > ? AND last_activity < ? AND balances != '{}' ORDER BY id LIMIT ?",
            (after or "", cutoff.isoformat(), limit),
        )
        return [r[0] for r in rows.fetchall()]

    def members_due_review(self, day: dt.date, after: str | None, limit: int) -> list[str]:
        # two indexed lookups (an OR would scan every member)
        rows = self.conn.execute(
            "SELECT id FROM members WHERE tier_review IS NOT NULL AND tier_review <= ?1 AND id > ?2 "
            "UNION SELECT id FROM members WHERE grace_until IS NOT NULL AND grace_until <= ?1 AND id > ?2 "
            "ORDER BY 1 LIMIT ?3",
            (day.isoformat(), after or "", limit),
        )
        return [r[0] for r in rows.fetchall()]

    def count_members(self) -> int:
        return self.conn.execute("SELECT count(*) FROM members").fetchone()[0]

    # -------------------------------------------------------------- ledger and lots

    _ADD_ENTRIES = (
        "INSERT INTO ledger (member, balance, kind, amount, at, day, event, rule, program, lines, reverses, "
        "reason, shortfall) VALUES "
    )

    def add_entries(self, entries: Sequence[LedgerEntry]) -> list[int]:
        """Append entries in one statement per 500 and set their ids (consecutive: rowids are the largest + 1)."""
        ids: list[int] = []
        for part in chunks(list(entries), 500):
            params: list = []
            for e in part:
                params += (
                    e.member,
                    e.balance,
                    e.kind,
                    str(e.amount),
                    e.at.isoformat(),
                    e.day.isoformat(),
                    e.event,
                    e.rule,
                    e.program,
                    _enc_weights(e.lines),
                    e.reverses,
                    e.reason,
                    None if e.shortfall is None else str(e.shortfall),
                )
            marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
            last = self.conn.execute(self._ADD_ENTRIES + marks, params).lastrowid
            first = last - len(part) + 1
            for i, e in enumerate(part):
                e.id = first + i
                ids.append(e.id)
        return ids

    _ENTRY = "id, member, balance, kind, amount, at, day, event, rule, program, lines, reverses, reason, shortfall"

    @staticmethod
    def _entry(row) -> LedgerEntry:
        return LedgerEntry(
            row[1],
            row[2],
            row[3],
            Decimal(row[4]),
            dt.datetime.fromisoformat(row[5]),
            dt.date.fromisoformat(row[6]),
            row[7],
            row[8],
            row[9],
            _dec_weights(row[10]),
            row[11],
            row[12],
            row[0],
            None if row[13] is None else Decimal(row[13]),
        )

    def _event_member(self, event_id: str, member_id: str | None) -> str | None:
        if member_id is None:
            row = self.conn.execute("SELECT member FROM events WHERE id = ?", (event_id,)).fetchone()
            member_id = row[0] if row else None
        return member_id

    def entries_for_event(self, event_id: str, member_id: str | None = None) -> list[LedgerEntry]:
        """The entries an event (or operation) posted; found through the member's index (there is none on event)."""
        member_id = self._event_member(event_id, member_id)
        if member_id is None:  # not a stored event (an import, say) and no member given: a scan
            sql, params = f"SELECT {self._ENTRY} FROM ledger WHERE event = ? ORDER BY id", (event_id,)
        else:
            sql = f"SELECT {self._ENTRY} FROM ledger WHERE member = ? AND event = ? ORDER BY id"
            params = (member_id, event_id)
        return [self._entry(r) for r in self.conn.execute(sql, params).fetchall()]

    def reversed_amounts(self, entry_ids: Sequence[int]) -> dict[int, Decimal]:
        """Per entry, the sum of the entries that reverse it (shortfalls recorded as debt included)."""
        out: dict[int, Decimal] = {}
        for part in chunks(list(entry_ids), 500):
            rows = self.conn.execute(
                f"SELECT reverses, amount, shortfall FROM ledger WHERE reverses IN ({', '.join('?' * len(part))})",
                tuple(part),
            )
            for entry, amount, shortfall in rows.fetchall():
                # a shortfall counts as reversed: it became debt
                taken = Decimal(amount) - Decimal(shortfall or 0) if Decimal(amount) <= 0 else Decimal(amount)
                out[entry] = out.get(entry, Decimal(0)) + taken
        return out

    def ledger(self, member_id: str, limit: int | None = None) -> list[LedgerEntry]:
        sql = f"SELECT {self._ENTRY} FROM ledger WHERE member = ? ORDER BY id DESC"
        params: tuple = (member_id,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [self._entry(r) for r in self.conn.execute(sql, params).fetchall()]

    def ledger_sums(self, member_id: str | None = None) -> dict[tuple[str, str], Decimal]:
        sql = "SELECT member, balance, amount FROM ledger" + (" WHERE member = ?" if member_id else "")
        out: dict[tuple[str, str], Decimal] = {}
        for member, balance, amount in self.conn.execute(sql, (member_id,) if member_id else ()):
            out[(member, balance)] = out.get((member, balance), Decimal(0)) + Decimal(amount)
        return out

    _LOT = "id, member, balance, amount, remaining, earned_on, releases_on, expires_on"

    @staticmethod
    def _lot(row) -> Lot:
        return Lot(
            row[0],
            row[1],
            row[2],
            Decimal(row[3]),
            Decimal(row[4]),
            dt.date.fromisoformat(row[5]),
            from_date(row[6]),
            from_date(row[7]),
        )

    def open_lots(self, member_id: str, balance: str) -> list[Lot]:
        rows = self.conn.execute(
            f"SELECT {self._LOT} FROM lots WHERE member = ? AND balance = ? AND open = 1 ORDER BY id",
            (member_id, balance),
        )
        return [self._lot(r) for r in rows.fetchall()]

    def open_lots_for(self, member_ids: Sequence[str], expiring_by: dt.date | None = None) -> dict[str, list[Lot]]:
        """Open lots of many members; with ``expiring_by``, only those that may expire by then."""
        out: dict[str, list[Lot]] = {}
        horizon = "" if expiring_by is None else " AND (expires_on IS NULL OR expires_on <= ?)"
        for part in chunks(list(member_ids), 500):
            rows = self.conn.execute(
                f"SELECT {self._LOT} FROM lots WHERE open = 1 AND member IN ({', '.join('?' * len(part))})"
                f"{horizon} ORDER BY id",
                (*part, *([expiring_by.isoformat()] if expiring_by else [])),
            )
            for r in rows.fetchall():
                out.setdefault(r[1], []).append(self._lot(r))
        return out

    def add_lots(self, lots: Sequence[Lot]) -> None:
        for part in chunks(list(lots), 500):  # one statement per 500 lots
            params: list = []
            for lot in part:
                params += (
                    lot.id,
                    lot.member,
                    lot.balance,
                    str(lot.amount),
                    str(lot.remaining),
                    lot.earned_on.isoformat(),
                    iso(lot.releases_on),
                    iso(lot.expires_on),
                )
            marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, 1)"] * len(part))
            self.conn.execute(f"INSERT INTO lots ({self._LOT}, open) VALUES {marks}", params)

    def update_lots(self, lots: Sequence[Lot], moves: Sequence[tuple[int, int, Decimal]]) -> None:
        self.conn.executemany(
            "UPDATE lots SET remaining = ?, open = ? WHERE id = ?",
            [(str(lot.remaining), 1 if lot.remaining > 0 else 0, lot.id) for lot in lots],
        )
        self.conn.executemany(
            "INSERT INTO lot_moves (entry, lot, amount) VALUES (?, ?, ?)",
            [(entry, lot, str(amount)) for entry, lot, amount in moves],
        )

    def lots_expiring(self, day: dt.date, limit: int) -> list[Lot]:
        """Open lots whose expiry day has come, soonest first (the partial expiry index serves it)."""
        rows = self.conn.execute(
            f"SELECT {self._LOT} FROM lots WHERE open = 1 AND expires_on IS NOT NULL AND expires_on <= ? "
            "ORDER BY expires_on, id LIMIT ?",
            (day.isoformat(), limit),
        )
        return [self._lot(r) for r in rows.fetchall()]

    def expired_from(self, lot_id: int) -> Decimal:
        """How much of a lot was taken by expiry."""
        rows = self.conn.execute(
            "SELECT m.amount FROM lot_moves m JOIN ledger e ON e.id = m.entry WHERE m.lot = ? AND e.kind = 'expire'",
            (lot_id,),
        )
        return sum((Decimal(a) for (a,) in rows.fetchall()), Decimal(0))

    def earned_since(self, member_id: str, balance: str, day: dt.date) -> Decimal:
        rows = self.conn.execute(
            # earned minus what refunds took back since: a return gives room under a cap back
            "SELECT amount FROM ledger WHERE member = ? AND balance = ? AND day >= ? AND kind IN ('earn', 'reverse')",
            (member_id, balance, day.isoformat()),
        )
        return sum((Decimal(a) for (a,) in rows.fetchall()), Decimal(0))

    # -------------------------------------------------------------- statistics, history, budgets

    _ADD_ACTIVITY = (
        "INSERT INTO activity (member, day, event, spend, visits, purchases, nights, refunds, points_earned, "
        "points_redeemed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (member, day, event) DO UPDATE SET "
        + ", ".join(f"{name} = {name} + excluded.{name}" for name in ACTIVITY_STATS)
    )

    def add_activity(self, member_id: str, day: dt.date, event: str | None, stats: dict[str, Decimal]) -> None:
        values = [0] * len(ACTIVITY_STATS)
        for name, value in stats.items():
            i = _STAT_INDEX.get(name)  # only these are kept per day (the member row keeps any on its lifetime)
            if i is not None and value:
                values[i] = _scaled(value)
        self.conn.execute(self._ADD_ACTIVITY, (member_id, day.isoformat(), event or "", *values))

    @staticmethod
    def _sums_sql(starts: Sequence[dt.date], where: str) -> str:
        cols = []
        for i in range(len(starts)):
            for name in ACTIVITY_STATS:
                cols.append(f"TOTAL(CASE WHEN day >= ?{i + 1} THEN {name} END)")
        return f"SELECT {', '.join(cols)} FROM activity WHERE {where}"

    @staticmethod
    def _unpack_sums(row, count: int) -> list[dict[str, Decimal]]:
        out = []
        n = len(ACTIVITY_STATS)
        for i in range(count):
            values = row[i * n : (i + 1) * n]
            out.append({name: Decimal(int(v)) / SCALE if v else _ZERO for name, v in zip(ACTIVITY_STATS, values)})
        return out

    def activity_sums(self, member_id: str, starts: Sequence[dt.date]) -> list[dict[str, Decimal]]:
        """Sum of each statistic from each start day (inclusive) until now."""
        if not starts:
            return []
        k = len(starts)
        sql = self._sums_sql(starts, f"member = ?{k + 1} AND day >= ?{k + 2}")
        params = (*(s.isoformat() for s in starts), member_id, min(starts).isoformat())
        return self._unpack_sums(self.conn.execute(sql, params).fetchone(), k)

    def activity_sums_for(
        self, member_ids: Sequence[str], starts: Sequence[dt.date]
    ) -> dict[str, list[dict[str, Decimal]]]:
        if not starts or not member_ids:
            return {}
        k = len(starts)
        out = {}
        for part in chunks(list(member_ids), 500):
            marks = ", ".join(f"?{k + 2 + j}" for j in range(len(part)))
            sql = self._sums_sql(starts, f"day >= ?{k + 1} AND member IN ({marks})")
            sql = sql.replace("SELECT ", "SELECT member, ", 1) + " GROUP BY member"
            params = (*(s.isoformat() for s in starts), min(starts).isoformat(), *part)
            for row in self.conn.execute(sql, params).fetchall():
                out[row[0]] = self._unpack_sums(row[1:], k)
        return out

    def firings(self, member_id: str, keys: Iterable[str]) -> dict[str, list[dt.datetime]]:
        keys = list(keys)
        if not keys:
            return {}
        rows = self.conn.execute(
            f"SELECT key, at FROM firings WHERE member = ? AND key IN ({', '.join('?' * len(keys))})",
            (member_id, *keys),
        )
        out: dict[str, list[dt.datetime]] = {}
        for key, at in rows.fetchall():
            out.setdefault(key, []).append(dt.datetime.fromisoformat(at))
        return out

    def firings_for(self, member_ids: Sequence[str], keys: Iterable[str]) -> dict[str, dict[str, list]]:
        keys = list(keys)
        out: dict[str, dict[str, list]] = {}
        if not keys:
            return out
        for part in chunks(list(member_ids), 500):
            rows = self.conn.execute(
                f"SELECT member, key, at FROM firings WHERE key IN ({', '.join('?' * len(keys))}) "
                f"AND member IN ({', '.join('?' * len(part))})",
                (*keys, *part),
            )
            for member, key, at in rows.fetchall():
                out.setdefault(member, {}).setdefault(key, []).append(dt.datetime.fromisoformat(at))
        return out

    def add_firing(self, member_id: str, key: str, at: dt.datetime, event: str | None) -> None:
        self.conn.execute(
            "INSERT INTO firings (member, key, at, event) VALUES (?, ?, ?, ?)", (member_id, key, at.isoformat(), event)
        )

    def void_firings(self, event_id: str) -> None:
        self.conn.execute("DELETE FROM firings WHERE event = ?", (event_id,))

    def budgets(self, keys: Iterable[str]) -> dict[str, Decimal]:
        keys = list(keys)
        if not keys:
            return {}
        rows = self.conn.execute(f"SELECT key, used FROM budgets WHERE key IN ({', '.join('?' * len(keys))})", keys)
        return {k: Decimal(v) for k, v in rows.fetchall()}

    def add_budget(self, key: str, amount: Decimal) -> None:
        row = self.conn.execute("SELECT used FROM budgets WHERE key = ?", (key,)).fetchone()
        used = (Decimal(row[0]) if row else Decimal(0)) + amount
        self.conn.execute("INSERT OR REPLACE INTO budgets (key, used) VALUES (?, ?)", (key, str(used)))

    def returns(self, purchase_id: str) -> dict[int, Decimal]:
        out: dict[int, Decimal] = {}
        for line, qty in self.conn.execute("SELECT line, quantity FROM returns WHERE purchase = ?", (purchase_id,)):
            out[line] = out.get(line, Decimal(0)) + Decimal(qty)
        return out

    def add_returns(self, purchase_id: str, refund_id: str, lines: dict[int, Decimal]) -> None:
        self.conn.executemany(
            "INSERT INTO returns (purchase, line, quantity, refund) VALUES (?, ?, ?, ?)",
            [(purchase_id, line, str(qty), refund_id) for line, qty in lines.items() if qty],
        )

    # -------------------------------------------------------------- the reward journal

    _REWARD = "id, reward, member, amount, unit, at, event, rule, program, args, lines, reverses"

    def add_reward_entry(self, entry: RewardEntry) -> int:
        cur = self.conn.execute(
            "INSERT INTO reward_journal (reward, member, amount, unit, at, event, rule, program, args, lines, reverses) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.reward,
                entry.member,
                None if entry.amount is None else str(entry.amount),
                entry.unit,
                entry.at.isoformat(),
                entry.event,
                entry.rule,
                entry.program,
                json.dumps({k: _json_value(v) for k, v in entry.args.items()}, ensure_ascii=False, sort_keys=True),
                _enc_weights(entry.lines),
                entry.reverses,
            ),
        )
        entry.id = cur.lastrowid
        return entry.id

    def reward_entries_for_event(self, event_id: str) -> list[RewardEntry]:
        rows = self.conn.execute(
            f"SELECT {self._REWARD} FROM reward_journal WHERE event = ? ORDER BY id", (event_id,)
        ).fetchall()
        return [
            RewardEntry(
                reward=r[1],
                member=r[2],
                amount=None if r[3] is None else Decimal(r[3]),
                unit=r[4],
                at=dt.datetime.fromisoformat(r[5]),
                event=r[6],
                rule=r[7],
                program=r[8],
                args=json.loads(r[9]) if r[9] else {},
                lines=_dec_weights(r[10]),
                reverses=r[11],
                id=r[0],
            )
            for r in rows
        ]

    def reward_reversed(self, entry_ids: Sequence[int]) -> dict[int, Decimal]:
        out: dict[int, Decimal] = {}
        for part in chunks(list(entry_ids), 500):
            rows = self.conn.execute(
                f"SELECT reverses, amount FROM reward_journal WHERE reverses IN ({', '.join('?' * len(part))})",
                tuple(part),
            )
            for entry, amount in rows.fetchall():
                out[entry] = out.get(entry, Decimal(0)) + Decimal(amount or 0)
        return out

    def reward_totals(self, member_id: str) -> dict[tuple[str, str | None], Decimal]:
        """Per (reward type, unit), the sum of the member's journal entries (a wallet's balance)."""
        out: dict[tuple[str, str | None], Decimal] = {}
        rows = self.conn.execute(
            "SELECT reward, unit, amount FROM reward_journal WHERE member = ? AND amount IS NOT NULL", (member_id,)
        )
        for reward, unit, amount in rows.fetchall():
            out[(reward, unit)] = out.get((reward, unit), Decimal(0)) + Decimal(amount)
        return out

    # -------------------------------------------------------------- coupons and tiers

    _COUPON_NAMES = [
        "code",
        "template",
        "member",
        "status",
        "issued_at",
        "valid_until",
        "event",
        "rule",
        "program",
        "reserved_by",
        "reserved_until",
        "redeemed_at",
        "redeemed_ref",
        "discount",
    ]
    _COUPON = ", ".join(_COUPON_NAMES)
    _COUPON_MARKS = ", ".join("?" * len(_COUPON_NAMES))
    _COUPON_SET = ", ".join(f"{name} = ?" for name in _COUPON_NAMES[1:])

    @staticmethod
    def _coupon(row) -> CouponRecord:
        return CouponRecord(
            row[0],
            row[1],
            row[2],
            row[3],
            dt.datetime.fromisoformat(row[4]),
            from_date(row[5]),
            row[6],
            row[7],
            row[8],
            row[9],
            from_datetime(row[10]),
            from_datetime(row[11]),
            row[12],
            None if row[13] is None else Decimal(row[13]),
        )

    @staticmethod
    def _coupon_values(c: CouponRecord) -> tuple:
        return (
            c.code,
            c.template,
            c.member,
            c.status,
            c.issued_at.isoformat(),
            iso(c.valid_until),
            c.event,
            c.rule,
            c.program,
            c.reserved_by,
            iso(c.reserved_until),
            iso(c.redeemed_at),
            c.redeemed_ref,
            None if c.discount is None else str(c.discount),
        )

    def add_coupon(self, coupon: CouponRecord) -> bool:
        """Add a new coupon; False (and nothing written) when its code is already taken."""
        cur = self.conn.execute(
            f"INSERT INTO coupons ({self._COUPON}) VALUES ({self._COUPON_MARKS}) ON CONFLICT (code) DO NOTHING",
            self._coupon_values(coupon),
        )
        if cur.rowcount != 1:
            return False
        self.conn.execute(
            "INSERT INTO coupon_counts (template, issued, redeemed) VALUES (?, 1, 0) "
            "ON CONFLICT(template) DO UPDATE SET issued = issued + 1",
            (coupon.template,),
        )
        return True

    def get_coupon(self, code: str) -> CouponRecord | None:
        row = self.conn.execute(f"SELECT {self._COUPON} FROM coupons WHERE code = ?", (code,)).fetchone()
        return None if row is None else self._coupon(row)

    def update_coupon(self, coupon: CouponRecord) -> None:
        before = self.conn.execute("SELECT status FROM coupons WHERE code = ?", (coupon.code,)).fetchone()
        values = self._coupon_values(coupon)
        self.conn.execute(f"UPDATE coupons SET {self._COUPON_SET} WHERE code = ?", (*values[1:], coupon.code))
        if before and before[0] != "redeemed" and coupon.status == "redeemed":
            self.conn.execute("UPDATE coupon_counts SET redeemed = redeemed + 1 WHERE template = ?", (coupon.template,))
        if before and before[0] != "void" and coupon.status == "void":
            self.conn.execute("UPDATE coupon_counts SET issued = issued - 1 WHERE template = ?", (coupon.template,))

    def coupons(self, member_id: str) -> list[CouponRecord]:
        rows = self.conn.execute(
            f"SELECT {self._COUPON} FROM coupons WHERE member = ? ORDER BY issued_at", (member_id,)
        )
        return [self._coupon(r) for r in rows.fetchall()]

    def coupons_for_event(self, event_id: str, member_id: str | None = None) -> list[CouponRecord]:
        member_id = self._event_member(event_id, member_id)
        if member_id is None:
            sql, params = f"SELECT {self._COUPON} FROM coupons WHERE event = ?", (event_id,)
        else:
            sql, params = f"SELECT {self._COUPON} FROM coupons WHERE member = ? AND event = ?", (member_id, event_id)
        return [self._coupon(r) for r in self.conn.execute(sql, params).fetchall()]

    def coupon_count(self, template: str, member_id: str | None = None) -> int:
        if member_id is None:
            row = self.conn.execute("SELECT issued FROM coupon_counts WHERE template = ?", (template,)).fetchone()
            return row[0] if row else 0
        row = self.conn.execute(
            "SELECT count(*) FROM coupons WHERE member = ? AND template = ? AND status != 'void'", (member_id, template)
        ).fetchone()
        return row[0]

    def add_tier_change(
        self, member_id: str, from_tier: str | None, to_tier: str, at: dt.datetime, reason: str, event: str | None
    ) -> None:
        self.conn.execute(
            "INSERT INTO tier_history (member, from_tier, to_tier, at, reason, event) VALUES (?, ?, ?, ?, ?, ?)",
            (member_id, from_tier, to_tier, at.isoformat(), reason, event),
        )

    def tier_history(self, member_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT from_tier, to_tier, at, reason, event FROM tier_history WHERE member = ? ORDER BY id",
                [member_id],
            )
        )

    # -------------------------------------------------------------- outbox

    def add_message(self, message: Message) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (dedupe_key, member, channel, address, subject, body, source, created_at, "
            "status, attempts, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
            (
                message.dedupe_key,
                message.member,
                message.channel,
                message.address,
                message.subject,
                message.body,
                message.source,
                message.created_at.isoformat(),
                message.created_at.astimezone(dt.UTC).isoformat(),
            ),
        )
        return cur.rowcount == 1

    _MSG = "id, dedupe_key, member, channel, body, source, created_at, subject, address, attempts, status, last_error"

    @staticmethod
    def _message(row) -> Message:
        return Message(
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            dt.datetime.fromisoformat(row[6]),
            row[7],
            row[8],
            row[0],
            row[9],
            row[10],
            row[11],
        )

    def claim_messages(
        self, now: dt.datetime, lease: dt.timedelta, limit: int, claim: str, channels: Sequence[str]
    ) -> list[Message]:
        now_s = now.astimezone(dt.UTC).isoformat()
        until = (now + lease).astimezone(dt.UTC).isoformat()
        with self.transaction():
            ids = [
                r[0]
                for r in self.conn.execute(
                    "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ? "
                    "AND (claimed_until IS NULL OR claimed_until < ?) "
                    f"AND channel IN ({', '.join('?' * len(channels))}) ORDER BY id LIMIT ?",
                    (now_s, now_s, *channels, limit),
                ).fetchall()
            ]
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            self.conn.execute(
                f"UPDATE outbox SET claim = ?, claimed_until = ? WHERE id IN ({marks})", (claim, until, *ids)
            )
            rows = self.conn.execute(f"SELECT {self._MSG} FROM outbox WHERE id IN ({marks}) ORDER BY id", ids)
            return [self._message(r) for r in rows.fetchall()]

    def mark_sent(self, message_id: int, claim: str, at: dt.datetime) -> bool:
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, claim = NULL, "
                "claimed_until = NULL WHERE id = ? AND claim = ? AND status = 'pending'",
                (at.astimezone(dt.UTC).isoformat(), message_id, claim),
            )
            return cur.rowcount == 1

    def mark_failed(self, message_id: int, claim: str, error: str, retry_at: dt.datetime | None, dead: bool) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, status = ?, next_attempt = ?, "
                "claim = NULL, claimed_until = NULL WHERE id = ? AND claim = ?",
                (
                    error[:500],
                    "dead" if dead else "pending",
                    None if retry_at is None else retry_at.astimezone(dt.UTC).isoformat(),
                    message_id,
                    claim,
                ),
            )

    def outbox_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())

    def pending_channels(self) -> dict[str, int]:
        """Channels with messages waiting (pending or to be retried), with how many."""
        return dict(
            self.conn.execute("SELECT channel, count(*) FROM outbox WHERE status = 'pending' GROUP BY 1").fetchall()
        )

    def messages(self, status: str | None = None) -> list[Message]:
        sql = f"SELECT {self._MSG} FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY id"
        return [self._message(r) for r in self.conn.execute(sql, (status,) if status else ()).fetchall()]

    # -------------------------------------------------------------- reporting

    def summary(self) -> dict[str, Any]:
        """Program-wide figures: members, ledger by kind, tiers, coupons, triggers, outbox."""
        ledger: dict[str, dict[str, Decimal]] = {}
        for balance, kind, amount in self.conn.execute("SELECT balance, kind, amount FROM ledger"):
            per = ledger.setdefault(balance, {})
            per[kind] = per.get(kind, Decimal(0)) + Decimal(amount)
        coupons: dict[str, dict[str, int]] = {}
        for template, status, n in self.conn.execute("SELECT template, status, count(*) FROM coupons GROUP BY 1, 2"):
            coupons.setdefault(template, {})[status] = n
        return {
            "members": self.count_members(),
            "events": dict(
                self.conn.execute("SELECT kind, count(*) FROM events WHERE status = 'applied' GROUP BY kind").fetchall()
            ),
            "refused": self.conn.execute("SELECT count(*) FROM events WHERE status = 'refused'").fetchone()[0],
            "ledger": ledger,
            "tiers": dict(self.conn.execute("SELECT coalesce(tier, '-'), count(*) FROM members GROUP BY 1").fetchall()),
            "tier_changes": self.conn.execute("SELECT count(*) FROM tier_history").fetchone()[0],
            "coupons": coupons,
            "triggers": dict(
                self.conn.execute(
                    "SELECT substr(key, 9), count(*) FROM firings WHERE key LIKE 'trigger:%' GROUP BY 1"
                ).fetchall()
            ),
            "outbox": self.outbox_counts(),
        }

    def find_coupon(self, member_id: str, template: str, day: dt.date) -> CouponRecord | None:
        """The member's oldest usable coupon of ``template`` on ``day`` (what an app shows first)."""
        row = self.conn.execute(
            f"SELECT {self._COUPON} FROM coupons WHERE member = ? AND template = ? AND status = 'issued' "
            "AND (valid_until IS NULL OR valid_until >= ?) ORDER BY issued_at, code LIMIT 1",
            (member_id, template, day.isoformat()),
        ).fetchone()
        return None if row is None else self._coupon(row)

    # -------------------------------------------------------------- scheduled runs

    def schedule_progress(self, day: dt.date) -> tuple[str | None, bool]:
        row = self.conn.execute(
            "SELECT last_member, done FROM schedule_runs WHERE day = ?", (day.isoformat(),)
        ).fetchone()
        return (row[0], bool(row[1])) if row else (None, False)

    def set_schedule_progress(self, day: dt.date, last_member: str | None, done: bool) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO schedule_runs (day, last_member, done) VALUES (?, ?, ?)",
            (day.isoformat(), last_member, int(done)),
        )
