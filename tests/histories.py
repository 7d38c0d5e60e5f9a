"""Seeded JSONL histories for the reliability tests, and the state checks they share.

A history is what ``loyalty run`` reads: signups, purchases with line items,
exact duplicates, the same id with another payload, full, partial and double
refunds, refunds that arrive before their purchase, point redemptions and
(optionally) daily trigger runs and coupon redemptions. The same seed always
gives the same lines, so a failure is replayed with ``LOYALTY_SEED=<seed>``.

As a script::

    python tests/histories.py OUT.jsonl [--seed N] [--events N] [--members N] [--triggers]

writes a history and prints its seed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import random
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "dsl" / "examples" / "coffee_chain.loy"
SEED_ENV = "LOYALTY_SEED"
DEFAULT_SEED = 20260503
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 1, 7, 0, tzinfo=SHANGHAI)

# sku, category, unit price
CATALOGUE = (
    ("LATTE_M", "coffee", "32.00"),
    ("AMERICANO_M", "coffee", "28.00"),
    ("FLAT_WHITE", "coffee", "34.00"),
    ("MOCHA_L", "coffee", "38.50"),
    ("GREEN_TEA", "tea", "22.00"),
    ("CHAI", "tea", "26.00"),
    ("CROISSANT", "bakery", "18.50"),
    ("BAGEL", "bakery", "16.00"),
    ("MUFFIN", "bakery", "15.50"),
    ("SANDWICH", "food", "36.00"),
    ("BEANS_250G", "merch", "88.00"),
)
NAMES = ("王芳", "李娜", "张伟", "Alice Chen", "Marco Rossi", "陈静", "Omar Haddad", "刘洋", "Emma Wong", "赵敏")


def short_expiry_program(folder: str | os.PathLike, days: int = 20) -> Path:
    """The coffee chain with points that expire ``days`` after earning, so daily trigger runs expire lots."""
    text = COFFEE.read_text(encoding="utf-8")
    changed = text.replace("points expire 24 months after last activity", f"points expire {days} days after earning")
    assert changed != text, "the coffee chain program no longer has the expiry line this helper changes"
    path = Path(folder) / "coffee_short_expiry.loy"
    path.write_text(changed, encoding="utf-8")
    return path


def pick_seed(default: int = DEFAULT_SEED) -> int:
    """The seed from ``$LOYALTY_SEED`` (``random`` picks a fresh one), else ``default``."""
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return default
    if text.lower() == "random":
        return random.SystemRandom().randrange(2**31)
    return int(text)


@dataclass
class History:
    """The lines of a history and what the generator put in them (by line index)."""

    seed: int
    lines: list[dict]
    duplicates: set[int] = field(default_factory=set)  # exact repeats of an earlier line
    conflicts: set[int] = field(default_factory=set)  # an earlier id with another payload
    early: set[str] = field(default_factory=set)  # refund ids placed before their purchase
    full_refunds: set[str] = field(default_factory=set)  # purchases a refund returns in full
    refund_of: dict[str, str] = field(default_factory=dict)  # refund id -> purchase id
    members: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.lines)

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.text(), encoding="utf-8")
        return path

    def counts(self) -> Counter:
        kinds = Counter(line["type"] for line in self.lines)
        kinds["duplicate"] = len(self.duplicates)
        kinds["conflict"] = len(self.conflicts)
        kinds["early_refund"] = len(self.early)
        return kinds


def _stamp(at: dt.datetime) -> str:
    return at.isoformat(timespec="seconds")


def generate(
    seed: int,
    events: int = 20_000,
    members: int = 2_000,
    *,
    days: int = 120,
    duplicate: float = 0.01,
    conflict: float = 0.002,
    full_refund: float = 0.02,
    partial_refund: float = 0.01,
    double_refund: float = 0.005,
    early_refund: float = 0.005,
    redeem: float = 0.03,
    triggers: bool = False,
    coupon_redeem: float = 0.0,
    prefix: str = "",
) -> History:
    """``events`` lines over ``members`` members; rates are shares of ``events``.

    Every member signs up (a ``signup`` event with name and birthday) before
    their first purchase. Refunds come after their purchase in time; an early
    refund is placed in the file before its purchase (as a late POS upload
    would). Duplicates and conflicting lines are placed after their original.
    With ``triggers`` a ``{"type": "triggers"}`` line runs each day once the
    day's events are in. ``coupon_redeem`` adds redemptions of a member's
    FREE_COFFEE coupon (by template) on one of their purchases. ``prefix``
    starts every member and event id, so histories with different prefixes
    share nothing.
    """
    rng = random.Random(seed)
    n = lambda rate: round(events * rate)  # noqa: E731
    n_dup, n_conf = n(duplicate), n(conflict)
    n_full, n_part, n_double, n_early = n(full_refund), n(partial_refund), n(double_refund), n(early_refund)
    n_redeem, n_coupon = n(redeem), n(coupon_redeem)
    n_purchase = events - members - n_dup - n_conf - n_full - n_part - n_double - n_redeem - n_coupon
    if n_purchase < max(members // 2, n_full + n_part + n_coupon, 1):
        raise ValueError("too few events for that many members and extras")
    ids = [f"{prefix}m{i:05d}" for i in range(members)]
    span = dt.timedelta(days=days).total_seconds()

    # (time, order, line): a base stream sorted by time
    timed: list[tuple[dt.datetime, int, dict]] = []
    seq = 0

    def add(at: dt.datetime, line: dict) -> None:
        nonlocal seq
        seq += 1
        timed.append((at, seq, line))

    times = sorted(START + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(n_purchase))
    buyers = [rng.choice(ids) for _ in times]
    first: dict[str, dt.datetime] = {}
    for at, m in zip(times, buyers):
        first.setdefault(m, at)
    for m in ids:
        at = first.get(m, START + dt.timedelta(seconds=rng.uniform(0, span)))
        joined = at - dt.timedelta(minutes=rng.randint(1, 600))
        birthday = dt.date(rng.randint(1960, 2005), rng.randint(1, 12), rng.randint(1, 28))
        add(
            joined,
            {
                "id": f"s-{m}",
                "type": "signup",
                "member": m,
                "at": _stamp(joined),
                "name": rng.choice(NAMES),
                "birthday": birthday.isoformat(),
            },
        )
    purchases: list[dict] = []
    purchase_at: dict[str, dt.datetime] = {}
    for k, (at, m) in enumerate(zip(times, buyers)):
        items = []
        for sku, category, price in rng.sample(CATALOGUE, rng.randint(1, 4)):
            qty = rng.choices((1, 2, 3), (6, 3, 1))[0]
            items.append({"sku": sku, "category": category, "quantity": qty, "unit_price": price})
        line = {
            "id": f"{prefix}p{k:06d}",
            "type": "purchase",
            "member": m,
            "at": _stamp(at),
            "channel": rng.choice(("store", "store", "app")),
            "store": f"SH-{rng.randint(1, 8):02d}",
            "items": items,
        }
        if rng.random() < 0.05:
            line["discount"] = "5.00"
        purchases.append(line)
        purchase_at[line["id"]] = at
        add(at, line)

    history = History(seed, [], members=ids)

    # refunds: full, partial, then a second refund (double) of some of them
    refunded = rng.sample(purchases, n_full + n_part)
    refunds: list[tuple[dt.datetime, dict]] = []
    for k, p in enumerate(refunded):
        at = purchase_at[p["id"]] + dt.timedelta(minutes=rng.randint(5, 14 * 24 * 60))
        line = {
            "id": f"{prefix}r{k:06d}",
            "type": "refund",
            "member": p["member"],
            "at": _stamp(at),
            "original": p["id"],
        }
        if k < n_full:
            line["items"] = []
            history.full_refunds.add(p["id"])
        else:
            line["items"] = _partial(rng, p)
        refunds.append((at, line))
    for k, (first_at, first_refund) in enumerate(rng.sample(refunds, min(n_double, len(refunds)))):
        p = next(x for x in purchases if x["id"] == first_refund["original"])
        at = first_at + dt.timedelta(minutes=rng.randint(1, 3 * 24 * 60))
        items = [] if rng.random() < 0.5 else _partial(rng, p)
        line = {
            "id": f"{prefix}rr{k:06d}",
            "type": "refund",
            "member": p["member"],
            "at": _stamp(at),
            "original": p["id"],
        }
        line["items"] = items
        if not items:
            history.full_refunds.add(p["id"])
        refunds.append((at, line))
    for _at, line in refunds:
        history.refund_of[line["id"]] = line["original"]
    early = {line["id"] for _, line in rng.sample(refunds, min(n_early, len(refunds)))}
    history.early = early
    for at, line in refunds:
        if line["id"] not in early:
            add(at, line)

    # point redemptions by members who have bought something before
    for k in range(n_redeem):
        p = rng.choice(purchases)
        at = purchase_at[p["id"]] + dt.timedelta(minutes=rng.randint(1, 20 * 24 * 60))
        points = rng.choice((20, 50, 100, 150, 300))
        add(
            at, {"id": f"{prefix}x{k:06d}", "type": "redeem", "member": p["member"], "points": points, "at": _stamp(at)}
        )

    # coupon redemptions (by template, on a purchase with the free item: refused when the member has none)
    with_item = [p for p in purchases if any(it["sku"] == "AMERICANO_M" for it in p["items"])]
    for k, p in enumerate(rng.sample(with_item, min(n_coupon, len(with_item)))):
        at = purchase_at[p["id"]] + dt.timedelta(seconds=30)
        add(
            at,
            {
                "id": f"{prefix}c{k:06d}",
                "type": "redeem_coupon",
                "member": p["member"],
                "template": "FREE_COFFEE",
                "purchase": p["id"],
            },
        )

    if triggers:
        last = max(t for t, _, _ in timed)
        day = START.date()
        while day <= last.date():
            after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), SHANGHAI) - dt.timedelta(seconds=1)
            add(after, {"type": "triggers", "at": day.isoformat()})
            day += dt.timedelta(days=1)

    timed.sort(key=lambda t: (t[0], t[1]))
    lines = [line for _, _, line in timed]

    # early refunds: somewhere in the 500 lines before their purchase
    position = {line.get("id"): i for i, line in enumerate(lines) if line.get("id")}
    inserts: list[tuple[int, dict]] = []
    for _at, line in refunds:
        if line["id"] in early:
            before = position[line["original"]]
            inserts.append((rng.randint(max(0, before - 500), before), line))
    lines = _insert(lines, inserts)

    # duplicates and conflicting payloads: after their original
    candidates = [i for i, line in enumerate(lines) if line.get("id")]
    marked: list[tuple[int, dict, str]] = []
    for i in rng.sample(candidates, n_dup):
        marked.append((rng.randint(i + 1, min(len(lines), i + 2000)), copy.deepcopy(lines[i]), "dup"))
    changeable = [i for i in candidates if lines[i]["type"] in ("purchase", "signup")]
    for i in rng.sample(changeable, n_conf):
        other = copy.deepcopy(lines[i])
        if other["type"] == "purchase":
            other["items"][0]["quantity"] += 1
        else:
            other["name"] = other["name"] + " (changed)"
        marked.append((rng.randint(i + 1, min(len(lines), i + 2000)), other, "conflict"))
    marked.sort(key=lambda t: t[0])
    out: list[dict] = []
    j = 0
    for i, line in enumerate([*lines, None]):
        while j < len(marked) and marked[j][0] <= i:
            (history.duplicates if marked[j][2] == "dup" else history.conflicts).add(len(out))
            out.append(marked[j][1])
            j += 1
        if line is not None:
            out.append(line)
    history.lines = out
    return history


def _partial(rng: random.Random, purchase: dict) -> list[dict]:
    """Some of a purchase's lines, each with part (or all) of its quantity, never the whole cart."""
    items = purchase["items"]
    chosen = rng.sample(items, rng.randint(1, len(items)))
    out = [{"sku": it["sku"], "quantity": rng.randint(1, it["quantity"])} for it in chosen]
    if len(chosen) == len(items) and all(o["quantity"] == it["quantity"] for o, it in zip(out, chosen)):
        if out[0]["quantity"] > 1:
            out[0]["quantity"] -= 1
        else:
            out.pop(0)
    return out


def _insert(lines: list[dict], inserts: list[tuple[int, dict]]) -> list[dict]:
    inserts = sorted(inserts, key=lambda t: t[0])
    out: list[dict] = []
    j = 0
    for i, line in enumerate(lines):
        while j < len(inserts) and inserts[j][0] <= i:
            out.append(inserts[j][1])
            j += 1
        out.append(line)
    out.extend(line for _, line in inserts[j:])
    return out


# ------------------------------------------------------------------ the CLI in a subprocess

# What the console script does, with this interpreter (so it works in any environment the tests run in).
LOYALTY = [sys.executable, "-c", "import sys; from loyalty_engine.cli import main; sys.argv[0] = 'loyalty'; main()"]


def loyalty_run(program, events, db, *extra: str) -> list[str]:
    """The argv of ``loyalty run PROGRAM EVENTS --db DB --json [extra]`` (synchronous NORMAL unless given)."""
    args = [*LOYALTY, "run", str(program), str(events), "--db", str(db), "--json"]
    if "--synchronous" not in extra:
        args += ["--synchronous", "NORMAL"]
    return [*args, *extra]


def errors_by_line(report: dict, lines: list[dict]) -> Counter:
    """The errors of a ``loyalty run --json`` report as (line content, message) pairs.

    Two runs that meet the same lines in the same state report the same
    pairs, whatever the line numbers: a conflict or a refusal is answered the
    same way every time the line comes back.
    """
    return Counter(
        (json.dumps(lines[e["line"] - 1], sort_keys=True, ensure_ascii=False), e["error"]) for e in report["errors"]
    )


def expected_errors(clean: Counter, lines: list[dict]) -> Counter:
    """The (line, message) pairs a run of ``lines`` should report, given a clean run's pairs."""
    message = {text: error for text, error in clean}
    texts = (json.dumps(line, sort_keys=True, ensure_ascii=False) for line in lines)
    return Counter((text, message[text]) for text in texts if text in message)


# ------------------------------------------------------------------ state of a database, for comparisons

# columns that say when something was processed (wall clock), not what
_CLOCK_COLUMNS = {"processed_at", "first_used", "applied_at", "seq"}  # seq: arrival order, differs between writers
_SKIP_TABLES = {"_migrations", "programs", "sqlite_sequence", "sqlite_stat1"}


def snapshot(path: str | os.PathLike, stable_ids: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table (sorted), without wall-clock columns: equal snapshots = equal state.

    With ``stable_ids`` a ledger entry is named by what it is (event, member,
    balance, kind, rule, n-th such entry) instead of its row id, wherever an id
    appears (ledger, reverses, lots, lot moves), and the outbox and tier history
    ids are left out: two runs that applied the same events in another
    interleaving of members compare equal.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        ]
        names: dict[int, tuple] = {}
        if stable_ids:
            seen: Counter = Counter()
            for entry_id, *key in conn.execute("SELECT id, event, member, balance, kind, rule FROM ledger ORDER BY id"):
                seen[tuple(key)] += 1
                names[entry_id] = (*key, seen[tuple(key)])
        renamed = {"ledger": ("id", "reverses"), "lots": ("id",), "lot_moves": ("entry", "lot")}
        dropped = {"outbox": {"id"}, "tier_history": {"id"}} if stable_ids else {}
        out = {}
        for table in tables:
            if table in _SKIP_TABLES or table.startswith("sqlite_"):
                continue
            cols = [
                r[1]
                for r in conn.execute(f"PRAGMA table_info('{table}')")
                if r[1] not in _CLOCK_COLUMNS and r[1] not in dropped.get(table, ())
            ]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM '{table}'").fetchall()
            if stable_ids and table in renamed:
                at = [cols.index(c) for c in renamed[table]]
                rows = [tuple(names.get(v, v) if i in at else v for i, v in enumerate(row)) for row in rows]
            out[table] = sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r))
        return out
    finally:
        conn.close()


def diff(a: dict[str, list[tuple]], b: dict[str, list[tuple]], limit: int = 3) -> list[str]:
    """Readable differences between two snapshots (empty when equal)."""
    out = []
    for table in sorted(set(a) | set(b)):
        ra, rb = a.get(table, []), b.get(table, [])
        if ra == rb:
            continue
        sa, sb = Counter(ra), Counter(rb)
        only_a = list((sa - sb).elements())[:limit]
        only_b = list((sb - sa).elements())[:limit]
        out.append(f"{table}: {len(ra)} vs {len(rb)} rows; only in first {only_a}; only in second {only_b}")
    return out


def summary_state(path: str | os.PathLike) -> dict:
    """The figures a person compares: balances per member, ledger sums, coupon codes, events."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        balances = dict(conn.execute("SELECT id, balances FROM members").fetchall())
        sums: dict[tuple[str, str], Decimal] = {}
        for member, balance, amount in conn.execute("SELECT member, balance, amount FROM ledger"):
            sums[(member, balance)] = sums.get((member, balance), Decimal(0)) + Decimal(amount)
        return {
            "balances": balances,
            "ledger_sums": {k: v for k, v in sums.items()},
            "coupons": sorted(conn.execute("SELECT code, status FROM coupons").fetchall()),
            "events": conn.execute("SELECT status, count(*) FROM events GROUP BY status ORDER BY 1").fetchall(),
        }
    finally:
        conn.close()


def check_invariants(conn: sqlite3.Connection) -> list[str]:
    """Store invariants on an open connection; returns the violations found (empty when fine).

    - each member's stored balance equals the sum of their ledger entries;
    - no lot is below zero or above its amount; open lots add up to a non-negative balance;
    - no earn entry is reversed by more than it earned (nor in its own direction);
    - a debit's shortfall is never negative; ``PRAGMA integrity_check`` is ``ok``.
    """
    problems = []
    sums: dict[tuple[str, str], Decimal] = {}
    for member, balance, amount in conn.execute("SELECT member, balance, amount FROM ledger"):
        sums[(member, balance)] = sums.get((member, balance), Decimal(0)) + Decimal(amount)
    stored: dict[tuple[str, str], Decimal] = {}
    for member, text in conn.execute("SELECT id, balances FROM members"):
        for balance, value in json.loads(text or "{}").items():
            stored[(member, balance)] = Decimal(value)
    for key in set(sums) | set(stored):
        if sums.get(key, Decimal(0)) != stored.get(key, Decimal(0)):
            problems.append(f"balance {key}: stored {stored.get(key, 0)} but entries sum to {sums.get(key, 0)}")
    lots: dict[tuple[str, str], Decimal] = {}
    for lot, member, balance, amount, remaining, is_open in conn.execute(
        "SELECT id, member, balance, amount, remaining, open FROM lots"
    ):
        if Decimal(remaining) < 0 or Decimal(remaining) > Decimal(amount):
            problems.append(f"lot {lot}: remaining {remaining} of {amount}")
        if is_open:
            lots[(member, balance)] = lots.get((member, balance), Decimal(0)) + Decimal(remaining)
    for key, total in sums.items():
        if total >= 0 and lots.get(key, Decimal(0)) != total:
            problems.append(f"lots {key}: open lots hold {lots.get(key, 0)} but the balance is {total}")
    rows = conn.execute(
        "SELECT e.id, e.amount, r.amount, r.shortfall FROM ledger e JOIN ledger r ON r.reverses = e.id"
    ).fetchall()
    taken: dict[int, Decimal] = {}
    earned: dict[int, Decimal] = {}
    for entry, amount, rev, shortfall in rows:
        rev, amount = Decimal(rev), Decimal(amount)
        whole = rev - Decimal(shortfall or 0) if rev <= 0 else rev  # the shortfall became debt
        if whole != 0 and (whole > 0) == (amount > 0):
            problems.append(f"entry {entry}: reversed in its own direction ({whole} against {amount})")
        taken[entry] = taken.get(entry, Decimal(0)) + whole
        earned[entry] = amount
    for entry, total in taken.items():
        if abs(total) > abs(earned[entry]):
            problems.append(f"entry {entry}: reversed {total} but earned {earned[entry]}")
    bad = conn.execute("SELECT count(*) FROM ledger WHERE CAST(shortfall AS REAL) < 0").fetchone()[0]
    if bad:
        problems.append(f"{bad} entries with a negative shortfall")
    check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        problems.append(f"integrity_check: {check}")
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--triggers", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else pick_seed()
    history = generate(seed, args.events, args.members, triggers=args.triggers)
    history.write(args.out)
    print(f"seed={seed} lines={len(history.lines)} {dict(history.counts())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
