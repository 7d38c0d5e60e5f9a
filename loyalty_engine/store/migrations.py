"""Versioned schema migrations for the SQLite store: named functions, applied in order.

Each applied migration is recorded in ``_migrations``; opening a database runs
the ones it has not seen. Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_members(db: sqlite_utils.Database) -> None:
    db["members"].create(
        {
            "id": str,
            "name": str,
            "joined": str,
            "birthday": str,
            "email": str,
            "phone": str,
            "attributes": str,
            "tier": str,
            "tier_since": str,
            "tier_review": str,  # next review date
            "grace_until": str,  # end of the grace period after a failed review
            "first_purchase": str,
            "last_purchase": str,
            "last_activity": str,
            "balances": str,  # JSON {balance: "decimal"}: the sum of the member's ledger entries
            "debts": str,  # JSON {balance: "decimal"}: reversals that found the balance empty
            "lifetime": str,  # JSON {statistic: "decimal"}
            "created_at": str,
        },
        pk="id",
        not_null={"balances", "debts", "lifetime", "attributes", "created_at"},
    )
    # Partial indexes: most members never need them, and an index a write does not touch costs nothing.
    db.execute("CREATE INDEX members_tier_review ON members(tier_review) WHERE tier_review IS NOT NULL")
    db.execute("CREATE INDEX members_grace_until ON members(grace_until) WHERE grace_until IS NOT NULL")


@migration
def m002_ledger(db: sqlite_utils.Database) -> None:
    db["programs"].create({"version": str, "name": str, "sources": str, "first_used": str}, pk="version")
    db["ledger"].create(
        {
            "id": int,
            "member": str,
            "balance": str,
            "kind": str,  # opening earn redeem expire reverse adjust transfer_in transfer_out debt
            "amount": str,
            "at": str,
            "day": str,
            "event": str,
            "rule": str,
            "program": str,
            "lines": str,  # JSON: per cart line, the weight the entry was earned on (null: not line-based)
            "reverses": int,
            "reason": str,
            "shortfall": str,  # the part of a debit the balance could not cover, recorded as debt
        },
        pk="id",
        not_null={"member", "balance", "kind", "amount", "at", "day"},
        foreign_keys=[("member", "members", "id"), ("program", "programs", "version")],
    )
    db["ledger"].create_index(["member", "balance", "day"])
    db["ledger"].create_index(["event"])
    db.execute("CREATE INDEX ledger_reverses ON ledger(reverses) WHERE reverses IS NOT NULL")
    # (execute, not executescript: executescript would commit the migration's transaction)
    db.execute(
        "CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
    )
    # A lot is what is left of one positive entry, so expiry and spending can go FIFO.
    db["lots"].create(
        {
            "id": int,  # the ledger entry that created it
            "member": str,
            "balance": str,
            "amount": str,
            "remaining": str,
            "earned_on": str,
            "releases_on": str,  # pending until this day
            "expires_on": str,  # null: never, or decided by last activity
            "open": int,
        },
        pk="id",
        foreign_keys=[("id", "ledger", "id")],
    )
    db.execute("CREATE INDEX lots_open_member ON lots(member, balance) WHERE open = 1")
    db.execute("CREATE INDEX lots_open_expiry ON lots(expires_on) WHERE open = 1 AND expires_on IS NOT NULL")
    db["lot_moves"].create(
        {"entry": int, "lot": int, "amount": str},
        foreign_keys=[("entry", "ledger", "id"), ("lot", "lots", "id")],
    )
    db["lot_moves"].create_index(["lot"])


@migration
def m003_events(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,  -- a rowid table: a row (payload and result, ~1 KB) stays on its page
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            member TEXT,
            hash TEXT NOT NULL,
            at TEXT,
            program TEXT,
            status TEXT NOT NULL,  -- applied | parked (a refund waiting for its purchase)
            original TEXT,
            payload TEXT,
            outcome TEXT,
            processed_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX events_parked ON events(original) WHERE status = 'parked'")
    db["returns"].create(
        {"purchase": str, "line": int, "quantity": str, "refund": str},
        foreign_keys=[("purchase", "events", "id")],
    )
    db["returns"].create_index(["purchase"])
    # One row per member, day and event: money and points in 1/10000 units so SQL sums are exact.
    db.execute(
        """
        CREATE TABLE activity (
            member TEXT NOT NULL,
            day TEXT NOT NULL,
            event TEXT NOT NULL,
            spend INTEGER NOT NULL DEFAULT 0,
            visits INTEGER NOT NULL DEFAULT 0,
            purchases INTEGER NOT NULL DEFAULT 0,
            nights INTEGER NOT NULL DEFAULT 0,
            refunds INTEGER NOT NULL DEFAULT 0,
            points_earned INTEGER NOT NULL DEFAULT 0,
            points_redeemed INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (member, day, event)
        ) WITHOUT ROWID
        """
    )
    db["firings"].create({"member": str, "key": str, "at": str, "event": str})
    db["firings"].create_index(["member", "key"])
    db["firings"].create_index(["event"])
    db["budgets"].create({"key": str, "used": str}, pk="key", not_null={"used"})


@migration
def m004_coupons_tiers(db: sqlite_utils.Database) -> None:
    db["coupons"].create(
        {
            "code": str,
            "template": str,
            "member": str,
            "status": str,  # issued | reserved | redeemed | void
            "issued_at": str,
            "valid_until": str,
            "event": str,
            "rule": str,
            "program": str,
            "reserved_by": str,
            "reserved_until": str,
            "redeemed_at": str,
            "redeemed_ref": str,
            "discount": str,
        },
        pk="code",
        not_null={"template", "member", "status", "issued_at"},
        foreign_keys=[("member", "members", "id")],
    )
    db["coupons"].create_index(["member", "template"])
    db["coupons"].create_index(["event"])
    db["coupon_counts"].create({"template": str, "issued": int, "redeemed": int}, pk="template")
    db["tier_history"].create(
        {"id": int, "member": str, "from_tier": str, "to_tier": str, "at": str, "reason": str, "event": str},
        pk="id",
        foreign_keys=[("member", "members", "id")],
    )
    db["tier_history"].create_index(["member"])


@migration
def m005_outbox_and_runs(db: sqlite_utils.Database) -> None:
    db["outbox"].create(
        {
            "id": int,
            "dedupe_key": str,
            "member": str,
            "channel": str,
            "address": str,
            "subject": str,
            "body": str,
            "source": str,
            "created_at": str,
            "status": str,  # pending | sent | dead
            "attempts": int,
            "next_attempt": str,
            "claim": str,
            "claimed_until": str,
            "last_error": str,
            "sent_at": str,
        },
        pk="id",
        not_null={"dedupe_key", "channel", "body", "status", "created_at"},
    )
    db["outbox"].create_index(["dedupe_key"], unique=True)
    db.execute("CREATE INDEX outbox_due ON outbox(next_attempt) WHERE status = 'pending'")
    # Scheduled work per local day: triggers resume after the last member done.
    db["schedule_runs"].create({"day": str, "last_member": str, "done": int}, pk="day")


@migration
def m006_ledger_no_replace(db: sqlite_utils.Database) -> None:
    # INSERT OR REPLACE deletes the old row without firing delete triggers (unless recursive_triggers is on):
    # refuse an insert that would replace an existing entry, so the ledger stays append-only.
    db.execute(
        "CREATE TRIGGER ledger_append_only_replace BEFORE INSERT ON ledger "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
    )


@migration
def m007_reward_journal(db: sqlite_utils.Database) -> None:
    # What plugin reward types granted: append-only like the ledger, reversed by new entries on refunds.
    db["reward_journal"].create(
        {
            "id": int,
            "reward": str,
            "member": str,
            "amount": str,
            "unit": str,
            "at": str,
            "event": str,
            "rule": str,
            "program": str,
            "args": str,  # JSON of the rule's evaluated arguments
            "lines": str,  # JSON: weight per cart line (null: the whole basket)
            "reverses": int,
        },
        pk="id",
        not_null={"reward", "member", "at"},
        foreign_keys=[("member", "members", "id"), ("program", "programs", "version")],
    )
    db["reward_journal"].create_index(["member", "reward"])
    db["reward_journal"].create_index(["event"])
    db.execute("CREATE INDEX reward_journal_reverses ON reward_journal(reverses) WHERE reverses IS NOT NULL")
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER reward_journal_append_only_{action.lower()} BEFORE {action} ON reward_journal "
            "BEGIN SELECT RAISE(ABORT, 'reward journal entries are append-only'); END"
        )
    db.execute(
        "CREATE TRIGGER reward_journal_append_only_replace BEFORE INSERT ON reward_journal "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM reward_journal WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'reward journal entries are append-only'); END"
    )


@migration
def m008_shadow_diffs(db: sqlite_utils.Database) -> None:
    # Shadow mode (service/shadow.py): one row per event a candidate program was compared on.
    db["shadow_diffs"].create(
        {
            "id": int,
            "event": str,
            "member": str,
            "at": str,
            "live": str,  # program versions
            "candidate": str,
            "candidate_name": str,
            "status": str,  # same | differs | error
            "live_points": str,
            "candidate_points": str,
            "delta": str,  # candidate - live
            "details": str,  # JSON: what differs, each as [live, candidate]
            "error": str,  # what the candidate raised
            "recorded_at": str,
        },
        pk="id",
        not_null={"event", "live", "candidate", "status", "recorded_at"},
    )
    db["shadow_diffs"].create_index(["candidate"])


@migration
def m009_no_event_indexes(db: sqlite_utils.Database) -> None:
    # Every index is one more page written by every commit that inserts into its table. The entries
    # and coupons of an event are found through the member's index instead (refunds and imports know
    # the member; the store looks it up in events otherwise), so these two do not earn their keep.
    db.execute("DROP INDEX IF EXISTS idx_ledger_event")
    db.execute("DROP INDEX IF EXISTS idx_coupons_event")


def applied(db: sqlite_utils.Database) -> set[str]:
    if "_migrations" not in db.table_names():
        return set()
    return {row["name"] for row in db.query("SELECT name FROM _migrations")}


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations, each in its own IMMEDIATE transaction; return their names."""
    done: list[str] = []
    for fn in MIGRATIONS:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            db.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
            if fn.__name__ in applied(db):
                db.conn.execute("COMMIT")
                continue
            fn(db)
            db.conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, dt.datetime.now(dt.UTC).isoformat()),
            )
            db.conn.execute("COMMIT")
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        done.append(fn.__name__)
    return done
