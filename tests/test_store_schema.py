"""The SQLite store: migrations, schema, connection settings, and an append-only ledger."""

import datetime as dt
import sqlite3
from decimal import Decimal

import pytest

from loyalty_engine.errors import StoreError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.store.migrations import MIGRATIONS, migrate
from loyalty_engine.store.sqlite import SQLiteStore

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PROGRAM = (
    'program "T" { currency CNY timezone "Asia/Shanghai" }\n'
    'rule "base" on purchase { award 1 point per 1 CNY of net_amount }\n'
)

EXPECTED_COLUMNS = {
    "members": {
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
    },
    "ledger": {
        "id",
        "member",
        "balance",
        "kind",
        "amount",
        "at",
        "day",
        "event",
        "rule",
        "program",
        "lines",
        "reverses",
        "reason",
        "shortfall",
    },
    "programs": {"version", "name", "sources", "first_used"},
    "lots": {"id", "member", "balance", "amount", "remaining", "earned_on", "releases_on", "expires_on", "open"},
    "lot_moves": {"entry", "lot", "amount"},
    "events": {"seq", "id", "kind", "member", "hash", "at", "program", "status", "original", "payload", "outcome"},
    "returns": {"purchase", "line", "quantity", "refund"},
    "activity": {
        "member",
        "day",
        "event",
        "spend",
        "visits",
        "purchases",
        "nights",
        "refunds",
        "points_earned",
        "points_redeemed",
    },
    "firings": {"member", "key", "at", "event"},
    "budgets": {"key", "used"},
    "coupons": {
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
    },
    "coupon_counts": {"template", "issued", "redeemed"},
    "tier_history": {"id", "member", "from_tier", "to_tier", "at", "reason", "event"},
    "outbox": {
        "id",
        "dedupe_key",
        "member",
        "channel",
        "address",
        "subject",
        "body",
        "source",
        "created_at",
        "status",
        "attempts",
        "next_attempt",
        "claim",
        "claimed_until",
        "last_error",
        "sent_at",
    },
    "schedule_runs": {"day", "last_member", "done"},
    "shadow_diffs": {
        "id",
        "event",
        "member",
        "at",
        "live",
        "candidate",
        "candidate_name",
        "status",
        "live_points",
        "candidate_points",
        "delta",
        "details",
        "error",
        "recorded_at",
    },
    "_migrations": {"name", "applied_at"},
}


def columns(conn, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def pragma(store: SQLiteStore, name: str):
    return store.conn.execute(f"PRAGMA {name}").fetchone()[0]


def engine_with_entries(path) -> Engine:
    engine = Engine.open(load_program("t.loy", text=PROGRAM), path)
    engine.process(
        {
            "id": "t1",
            "type": "purchase",
            "member": "m1",
            "at": "2026-05-01T10:00:00+08:00",
            "items": [{"sku": "A", "quantity": 1, "unit_price": "100"}],
        }
    )
    return engine


# ------------------------------------------------------------------ migrations


def test_migrations_are_applied_once_and_recorded(tmp_path):
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    names = [row[0] for row in store.conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [fn.__name__ for fn in MIGRATIONS]
    assert names == sorted(names) and len(names) >= 5
    applied_at = dict(store.conn.execute("SELECT name, applied_at FROM _migrations"))
    assert all(dt.datetime.fromisoformat(v).utcoffset() is not None for v in applied_at.values())
    assert migrate(store.db) == []  # nothing left to do
    store.close()
    again = SQLiteStore(path)  # reopening applies nothing again
    assert dict(again.conn.execute("SELECT name, applied_at FROM _migrations")) == applied_at
    again.close()


def test_a_failed_migration_is_rolled_back_and_not_recorded(tmp_path, monkeypatch):
    from loyalty_engine.store import migrations

    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError):
        SQLiteStore(path)
    conn = sqlite3.connect(path)
    assert "half_done" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("SELECT count(*) FROM _migrations WHERE name = 'm999_broken'").fetchone()[0] == 0
    conn.close()


def test_tables_and_columns(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(EXPECTED_COLUMNS) <= tables
    for table, expected in EXPECTED_COLUMNS.items():
        assert expected <= columns(store.conn, table), table
    unique_ids = [
        r for r in store.conn.execute("PRAGMA index_list(events)") if r[2] and _index_columns(store, r[1]) == {"id"}
    ]
    assert unique_ids, "events.id must be unique (it is the idempotency key)"
    unique = [
        r
        for r in store.conn.execute("PRAGMA index_list(outbox)")
        if r[2] and "dedupe_key" in _index_columns(store, r[1])
    ]
    assert unique, "outbox.dedupe_key must be unique"
    triggers = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"ledger_append_only_update", "ledger_append_only_delete"} <= triggers
    fks = {(r[2], r[3]) for r in store.conn.execute("PRAGMA foreign_key_list(ledger)")}
    assert ("members", "member") in fks and ("programs", "program") in fks
    store.close()


def _index_columns(store, index: str) -> set[str]:
    return {r[2] for r in store.conn.execute(f"PRAGMA index_info({index})")}


# ------------------------------------------------------------------ connection settings


def test_file_store_settings(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    assert pragma(store, "journal_mode") == "wal"
    assert pragma(store, "busy_timeout") >= 5000
    assert pragma(store, "foreign_keys") == 1
    assert pragma(store, "synchronous") == 2  # FULL by default
    assert store.synchronous == "FULL"
    store.close()


def test_synchronous_normal_is_allowed_and_others_are_not(tmp_path):
    store = SQLiteStore(tmp_path / "store.db", synchronous="normal")
    assert pragma(store, "synchronous") == 1
    store.close()
    engine = Engine.open(load_program("t.loy", text=PROGRAM), tmp_path / "e.db", synchronous="NORMAL")
    assert pragma(engine.store, "synchronous") == 1
    engine.close()
    for bad in ("OFF", "EXTRA", "0"):
        with pytest.raises(ValueError):
            SQLiteStore(tmp_path / "x.db", synchronous=bad)


def test_busy_timeout_below_five_seconds_is_refused(tmp_path):
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "store.db", busy_timeout=1)
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=12)
    assert pragma(store, "busy_timeout") == 12000
    store.close()


def test_foreign_keys_are_enforced(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "INSERT INTO ledger (member, balance, kind, amount, at, day) VALUES ('ghost', 'points', 'earn', '1', "
            "'2026-05-01T00:00:00+00:00', '2026-05-01')"
        )
    store.close()


def test_unopenable_path_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "missing-dir" / "store.db")


def test_write_transactions_begin_immediate(tmp_path):
    """A second connection cannot write while a transaction is open, even before its first write."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    with store.transaction():
        assert store.conn.in_transaction
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    store.close()


def test_nested_transaction_rolls_back_only_the_inner_part(tmp_path):
    store = SQLiteStore(tmp_path / "store.db")
    with store.transaction():
        store.set_schedule_progress(dt.date(2026, 1, 1), "a", True)
        with pytest.raises(RuntimeError), store.transaction():
            store.set_schedule_progress(dt.date(2026, 1, 2), "b", True)
            raise RuntimeError("inner")
    assert store.schedule_progress(dt.date(2026, 1, 1)) == ("a", True)
    assert store.schedule_progress(dt.date(2026, 1, 2)) == (None, False)
    store.close()


# ------------------------------------------------------------------ append-only ledger


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger SET amount = '1000000'",
        "UPDATE ledger SET kind = 'adjust' WHERE id = 1",
        "DELETE FROM ledger",
        "DELETE FROM ledger WHERE id = 1",
        "INSERT OR REPLACE INTO ledger (id, member, balance, kind, amount, at, day) "
        "VALUES (1, 'm1', 'points', 'earn', '999', '2026-05-01T00:00:00+00:00', '2026-05-01')",
    ],
)
def test_ledger_update_and_delete_are_refused_by_the_database(tmp_path, sql):
    engine = engine_with_entries(tmp_path / "store.db")
    engine.close()
    conn = sqlite3.connect(tmp_path / "store.db")  # a plain connection: the refusal is in the database itself
    before = conn.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    assert before
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(sql)
    conn.rollback()
    assert conn.execute("SELECT * FROM ledger ORDER BY id").fetchall() == before
    conn.close()


def test_ledger_is_append_only_through_the_store_too(tmp_path):
    engine = engine_with_entries(tmp_path / "store.db")
    with pytest.raises((sqlite3.DatabaseError, StoreError), match="append-only"), engine.store.transaction():
        engine.store.conn.execute("DELETE FROM ledger")
    (entry,) = engine.store.ledger("m1")
    with pytest.raises((sqlite3.DatabaseError, StoreError), match="append-only"), engine.store.transaction():
        engine.store.conn.execute(
            "REPLACE INTO ledger (id, member, balance, kind, amount, at, day) VALUES (?, 'm1', 'points', 'earn', "
            "'1', '2026-05-01T00:00:00+00:00', '2026-05-01')",
            (entry.id,),
        )
    assert engine.store.ledger_sums() == {("m1", "points"): Decimal(100)}
    assert engine.store.integrity_check() == "ok"
    engine.close()


# ------------------------------------------------------------------ the write path's indexes (m009)


def _indexes(conn, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA index_list({table})")}


def test_an_existing_database_loses_the_event_indexes_and_keeps_its_lookups(tmp_path, monkeypatch):
    """m009 drops ledger(event) and coupons(event) from a database made before it; lookups go by member."""
    from loyalty_engine.store import migrations

    path = tmp_path / "store.db"
    before = [fn for fn in migrations.MIGRATIONS if fn.__name__ != "m009_no_event_indexes"]
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    engine = engine_with_entries(path)
    assert "idx_ledger_event" in _indexes(engine.store.conn, "ledger")
    assert "idx_coupons_event" in _indexes(engine.store.conn, "coupons")
    engine.close()
    monkeypatch.undo()
    store = SQLiteStore(path)
    assert "m009_no_event_indexes" in {r[0] for r in store.conn.execute("SELECT name FROM _migrations")}
    assert "idx_ledger_event" not in _indexes(store.conn, "ledger")
    assert "idx_coupons_event" not in _indexes(store.conn, "coupons")
    (entry,) = store.entries_for_event("t1")  # the member is looked up in events
    assert entry.event == "t1" and entry.amount == Decimal(100)
    assert store.entries_for_event("t1", "m1") == [entry]
    assert store.entries_for_event("t1", "someone-else") == []
    assert store.entries_for_event("no-such-event") == []  # neither an event nor a member: a scan, no error
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM ledger WHERE member = ? AND event = ?", ("m1", "t1")
    ).fetchall()
    assert any("idx_ledger_member_balance_day" in row[-1] for row in plan)  # by the member's index
    store.close()


def test_a_database_from_before_shadow_mode_gets_its_table_on_opening(tmp_path):
    path = tmp_path / "old.db"
    engine_with_entries(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE shadow_diffs")
    conn.execute("DELETE FROM _migrations WHERE name = 'm008_shadow_diffs'")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)  # as a database written by the previous release
    assert columns(store.conn, "shadow_diffs") == EXPECTED_COLUMNS["shadow_diffs"]
    assert store.conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 1  # its data untouched
    store.close()
