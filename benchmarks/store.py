"""The stateful engine on SQLite: the canonical program over a stream of purchases.

The canonical 13-rule program (``benchmarks/canonical.loy``, see
/work/shared/bench/CANONICAL.md) runs on :class:`Engine` with a SQLite file, so
every event pays for what a till pays for: the idempotency row, the member's
context from the store (limit history, statistics), the ledger entries, lots,
coupons, activity and the member row. Members are created first (untimed);
then the same seeded events go through each way of processing them:

- ``process``, one commit per event, ``synchronous=NORMAL``;
- ``process``, one commit per event, ``synchronous=FULL`` (on every k-th block
  only, ``--full-events`` in all, because each commit waits for the disk);
- ``process`` inside ``store.batch()`` of ``--batch`` events, ``NORMAL``;
- ``preview`` (reads the store, writes nothing), on the NORMAL database;
- ``loyalty run --batch N --synchronous NORMAL`` on the same events as a
  JSON-lines file (a subprocess: wall clock, and without its start-up).

Every round starts from fresh databases and walks the events in blocks; each
block is run by every mode back to back, in an order that rotates from block to
block (the shared machine is noisy, so a burst hits every mode alike). Reported:
median (min, max) over rounds of events/s and microseconds per event. No
figure is asserted: this prints.

    python benchmarks/store.py                    # 100,000 events, 10,000 members, 3 rounds
    python benchmarks/store.py --quick            # about 10 s
    python benchmarks/store.py --events 20000 --members 2000 --rounds 5 --json
    python benchmarks/store.py --profile          # cProfile of process() and preview(), SQL vs Python
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import datetime as dt
import gc
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from loyalty_engine.model import Member
from loyalty_engine.program import Program, load_program
from loyalty_engine.service.engine import Engine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling scripts, as profile_canonical.py does

import canonical  # noqa: E402 - the purchase distribution (categories, tiers, prices) is shared

ROOT = HERE.parent
CANONICAL_LOY = HERE / "canonical.loy"
DEFAULT_SEED = 20240611
TZ = ZoneInfo("Asia/Shanghai")
START = dt.date(2025, 3, 3)  # first local day of the event stream (a Monday)
SPAN_DAYS = 60  # the stream covers two months: about 10 purchases per member by default
P_JOIN_DURING = 0.15  # members who join during the stream (their purchases come after they join)
P_JOINED_RECENTLY = 0.05  # members who joined in the 30 days before it
CLOCK = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)  # the engine's clock (member creation time)

RAW_SQLITE_CANONICAL = 27_900  # commits/s, CANONICAL.md: 3 rows per commit, executemany, WAL, NORMAL
GOAL_NORMAL = 10_000  # events/s, issue 3: process, one commit per event, synchronous=NORMAL


# ------------------------------------------------------------------ the workload


def generate_members(m: int, seed: int) -> list[Member]:
    """``m`` members: tier bronze 40 / silver 30 / gold 20 / platinum 10 %, birthdays, joined dates."""
    c = canonical
    rng = random.Random(seed)
    out = []
    for i in range(m):
        r = rng.random()
        if r < P_JOIN_DURING:
            joined = START + dt.timedelta(days=rng.randrange(SPAN_DAYS))
        elif r < P_JOIN_DURING + P_JOINED_RECENTLY:
            joined = START - dt.timedelta(days=rng.randint(1, 30))
        else:
            joined = START - dt.timedelta(days=rng.randint(31, 3000))
        out.append(
            Member(
                f"m{i:07d}",
                name=f"Member {i}",
                joined=joined,
                birthday=dt.date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)),
                tier=c._pick(rng, c.TIERS),
                email=f"m{i}@example.com",
                phone=f"+86 138 {i // 10000:04d} {i % 10000:04d}",
            )
        )
    return out


def generate_events(n: int, members: list[Member], seed: int) -> list[dict]:
    """``n`` purchases as decoded JSON (what a till sends), in time order over ``SPAN_DAYS`` local days.

    Baskets follow CANONICAL.md (1 to 8 lines over 6 categories, coffee the most
    common, a quarter of merch lines 400-3,000 CNY); 30% online; stores S1..S10.
    A purchase goes to a member who has joined by that day.
    """
    c = canonical
    rng = random.Random(seed + 1)
    cat_weights = [(name, spec[0]) for name, spec in c.CATEGORIES.items()]
    order = sorted(members, key=lambda mm: mm.joined)
    joined = [mm.joined for mm in order]
    moments = []
    for _ in range(n):
        day = START + dt.timedelta(days=rng.randrange(SPAN_DAYS))
        moments.append(
            dt.datetime(day.year, day.month, day.day, rng.randint(6, 22), rng.randrange(60), rng.randrange(60))
        )
    moments.sort()
    events = []
    for i, local in enumerate(moments):
        eligible = bisect.bisect_right(joined, local.date())
        member = order[rng.randrange(eligible)]
        items = []
        for j in range(rng.randint(1, 8)):
            category = c._pick(rng, cat_weights)
            _, low, high, max_qty = c.CATEGORIES[category]
            if category == "merch" and rng.random() < c.EXPENSIVE_SHARE:
                price, qty = c._price(rng, 400, 3000), 1
            else:
                price, qty = c._price(rng, low, high), rng.randint(1, max_qty)
            items.append(
                {"sku": f"{category[:3].upper()}{j}", "category": category, "quantity": qty, "unit_price": str(price)}
            )
        events.append(
            {
                "id": f"e{i:07d}",
                "type": "purchase",
                "member": member.id,
                "at": local.replace(tzinfo=TZ).astimezone(dt.UTC).isoformat(),
                "channel": "online" if rng.random() < c.P_ONLINE else "store",
                "store": f"S{rng.randint(1, 10)}",
                "items": items,
            }
        )
    return events


def describe(events: list[dict], members: list[Member]) -> dict[str, float]:
    """Shares that show the mix is the canonical one (from the generated data, not the engine)."""
    joined = {m.id: m.joined for m in members}
    birthday = {m.id: m.birthday for m in members}
    n = len(events) or 1
    amounts, new, bmonth, tuesday, weekend = [], 0, 0, 0, 0
    for e in events:
        local = dt.datetime.fromisoformat(e["at"]).astimezone(TZ)
        amount = sum(float(i["unit_price"]) * i["quantity"] for i in e["items"])
        amounts.append(amount)
        new += (local.date() - joined[e["member"]]).days < 30
        bmonth += birthday[e["member"]].month == local.month
        tuesday += local.weekday() == 2
        weekend += local.weekday() >= 5
    return {
        "members_with_events": len({e["member"] for e in events}) / max(1, len(members)),
        "mean_lines": sum(len(e["items"]) for e in events) / n,
        "mean_amount": sum(amounts) / n,
        "online": sum(e["channel"] == "online" for e in events) / n,
        "amount_500": sum(a >= 500 for a in amounts) / n,
        "joined_under_30_days": new / n,
        "birthday_month": bmonth / n,
        "tuesday": tuesday / n,
        "weekend": weekend / n,
    }


# ------------------------------------------------------------------ engines and modes


def open_engine(program: Program, path: Path, synchronous: str, members: list[Member]) -> Engine:
    """A fresh database with every member created (in one batch: setup, not timed)."""
    engine = Engine.open(program, path, synchronous=synchronous, clock=lambda: CLOCK)
    with engine.store.batch():
        for member in members:
            engine.upsert_member(member)
    return engine


def run_process(engine: Engine, chunk: list[dict]) -> None:
    process = engine.process
    for event in chunk:
        process(event)


def run_batched(engine: Engine, chunk: list[dict], size: int) -> None:
    process = engine.process
    batch = engine.store.batch
    for i in range(0, len(chunk), size):
        with batch():
            for event in chunk[i : i + size]:
                process(event)


def run_preview(engine: Engine, chunk: list[dict]) -> None:
    preview = engine.preview
    for event in chunk:
        preview(event)


MODES = {
    "normal": "process, 1 commit/event, synchronous=NORMAL",
    "full": "process, 1 commit/event, synchronous=FULL",
    "batch": "process in store.batch() of {batch}, NORMAL",
    "preview": "preview (reads the store, no writes)",
    "cli": "loyalty run --batch {batch} --synchronous NORMAL",
}


def ledger_totals(engine: Engine) -> tuple[int, int, int]:
    """(events stored, points in the ledger, coupons issued): the same stream gives the same totals."""
    conn = engine.store.conn
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    points = conn.execute("SELECT total(CAST(amount AS INTEGER)) FROM ledger WHERE balance = 'points'").fetchone()[0]
    coupons = conn.execute("SELECT count(*) FROM coupons").fetchone()[0]
    return events, int(points), coupons


def one_round(program, members, events, workdir: Path, args, r: int) -> dict:
    """One pass over the events with every mode interleaved by block; seconds and events per mode."""
    rdir = workdir / f"round{r}"
    rdir.mkdir()
    t0 = time.perf_counter()
    engines = {
        "normal": open_engine(program, rdir / "normal.db", "NORMAL", members),
        "full": open_engine(program, rdir / "full.db", "FULL", members),
        "batch": open_engine(program, rdir / "batch.db", "NORMAL", members),
    }
    setup = time.perf_counter() - t0
    runners = {
        "normal": lambda chunk: run_process(engines["normal"], chunk),
        "full": lambda chunk: run_process(engines["full"], chunk),
        "batch": lambda chunk: run_batched(engines["batch"], chunk, args.batch),
        "preview": lambda chunk: run_preview(engines["normal"], chunk),
    }
    block = max(args.batch, (args.block // args.batch) * args.batch)
    blocks = [events[i : i + block] for i in range(0, len(events), block)]
    full_blocks = max(1, min(len(blocks), -(-args.full_events // block)))
    full_every = max(1, len(blocks) // full_blocks)
    names = list(runners)
    spent = dict.fromkeys(names, 0.0)
    done = dict.fromkeys(names, 0)
    per_block: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    perf = time.perf_counter
    for b, chunk in enumerate(blocks):
        for name in canonical.block_order(names, b, r):
            if name == "full" and (b % full_every or done["full"] >= args.full_events):
                continue
            t = perf()
            runners[name](chunk)
            t = perf() - t
            spent[name] += t
            done[name] += len(chunk)
            per_block[name].append(t / len(chunk) * 1e6)
        if not args.json:
            print(f"\r  round {r + 1}: block {b + 1}/{len(blocks)}", end="", file=sys.stderr, flush=True)
    if not args.json:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
    totals = {name: ledger_totals(engine) for name, engine in engines.items()}
    sizes = {name: os.path.getsize(rdir / f"{name}.db") for name in engines}
    for engine in engines.values():
        engine.close()
    out = {
        name: {"seconds": spent[name], "events": done[name], "block_us_median": statistics.median(per_block[name])}
        for name in names
    }
    if not args.no_cli:
        out["cli"] = run_cli(program, members, events, rdir, args)
    if totals["normal"] != totals["batch"]:
        raise SystemExit(f"NORMAL and batched databases differ after the same events: {totals}")
    return {"modes": out, "setup_seconds": setup, "totals": totals, "db_bytes": sizes}


def run_cli(program, members, events, rdir: Path, args) -> dict:
    """``loyalty run`` in a subprocess on the events as JSON lines (members created beforehand)."""
    jsonl = rdir / "events.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    empty = rdir / "empty.jsonl"
    empty.write_text("")
    open_engine(program, rdir / "cli.db", "NORMAL", members).close()
    open_engine(program, rdir / "startup.db", "NORMAL", members[:1]).close()
    # the console script's entry point ("python -m loyalty_engine.cli" misses the database commands)
    base = [sys.executable, "-c", "import sys; from loyalty_engine.cli import main; sys.exit(main())"]
    base += ["run", str(CANONICAL_LOY)]
    opts = ["--batch", str(args.batch), "--synchronous", "NORMAL", "--json"]
    t = time.perf_counter()
    subprocess.run([*base, str(empty), "--db", str(rdir / "startup.db"), *opts], check=True, capture_output=True)
    startup = time.perf_counter() - t
    t = time.perf_counter()
    proc = subprocess.run([*base, str(jsonl), "--db", str(rdir / "cli.db"), *opts], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"loyalty run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    if report["applied"] != len(events):
        raise SystemExit(f"loyalty run applied {report['applied']} of {len(events)} events")
    return {
        "seconds": max(wall - startup, 1e-9),
        "wall_seconds": wall,
        "startup_seconds": startup,
        "events": len(events),
    }


# ------------------------------------------------------------------ the raw SQLite reference


def raw_sqlite(path: Path, synchronous: str, commits: int) -> float:
    """Commits/s of 3 ledger-like rows per ``BEGIN IMMEDIATE`` transaction (executemany), WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, member TEXT, kind TEXT, amount TEXT, at TEXT)")
    sql = "INSERT INTO ledger (member, kind, amount, at) VALUES (?, ?, ?, ?)"
    t = time.perf_counter()
    for i in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(f"m{i % 1000}", "earn", str(i), "2025-03-03T10:00:00+00:00")] * 3)
        conn.execute("COMMIT")
    rate = commits / (time.perf_counter() - t)
    conn.close()
    return rate


# ------------------------------------------------------------------ profile


def print_profile(profile: cProfile.Profile, top: int, title: str) -> None:
    """The ``top`` functions by cumulative time, with their share of the profiled total."""
    stats = pstats.Stats(profile)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)
    print(f"\n{title}: top {top} by cumulative time (profiled total {total:.2f} s; cProfile inflates Python calls)")
    print(f"  {'cum %':>6} {'cum s':>7} {'own s':>7} {'calls':>9}  function")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[:top]:
        where = file
        for prefix in (str(ROOT) + os.sep, sys.prefix + os.sep, sys.base_prefix + os.sep):
            if where.startswith(prefix):
                where = where[len(prefix) :]
        label = f"{where}:{line}({func})" if line else func
        print(f"  {ct / total * 100 if total else 0:6.1f} {ct:7.2f} {tt:7.2f} {nc:9,}  {label}")


class TimedConnection:
    """Wraps the store's sqlite3 connection and times every statement (no profiler overhead on Python)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.statements = 0
        self.seconds: dict[str, float] = {}

    def _timed(self, method, sql: str, *args):
        t = time.perf_counter()
        try:
            return method(sql, *args)
        finally:
            key = " ".join(sql.split())
            if key.startswith(("SAVEPOINT ", "RELEASE ", "ROLLBACK TO ")):
                key = key.rstrip("0123456789")  # one row for all the numbered savepoints
            else:
                key = key.split(" (")[0].split(" WHERE")[0][:70]
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
            self.statements += 1

    def execute(self, sql: str, *args):
        return self._timed(self.conn.execute, sql, *args)

    def executemany(self, sql: str, *args):
        return self._timed(self.conn.executemany, sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def sql_split(program, members, events, workdir: Path, top: int) -> None:
    """Unprofiled: time in SQL statements, in COMMIT and in Python per event; WAL written per commit; pages per table."""
    engine = open_engine(program, workdir / "split.db", "NORMAL", members)
    run_process(engine, events[:500])
    conn = engine.store.conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # so the WAL's size tells what the commits wrote
    timed = TimedConnection(conn)
    engine.store.conn = timed
    rest = events[500:]
    t = time.perf_counter()
    run_process(engine, rest)
    total = time.perf_counter() - t
    engine.store.conn = conn
    n = len(rest)
    commit = timed.seconds.pop("COMMIT", 0.0)
    sql = sum(timed.seconds.values())
    wal = os.path.getsize(workdir / "split.db-wal")
    print(f"\nEngine.process without a profiler, {n:,} events, 1 commit/event, NORMAL (wal_autocheckpoint off)")
    print(
        f"  {total / n * 1e6:.0f} us/event = Python {(total - sql - commit) / n * 1e6:.0f} + SQL statements "
        f"{sql / n * 1e6:.0f} + COMMIT {commit / n * 1e6:.0f}; {timed.statements / n:.1f} statements/event; "
        f"WAL written {wal / n / 1024:.1f} KiB/commit ({wal / n / 4096:.1f} pages of 4 KiB)"
    )
    for key, seconds in sorted(timed.seconds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds / n * 1e6:7.1f} us  {key}")
    try:
        rows = conn.execute("SELECT name, count(*) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        kinds = dict(conn.execute("SELECT pagetype, count(*) FROM dbstat WHERE name = 'events' GROUP BY 1").fetchall())
    except sqlite3.Error:  # SQLite built without the dbstat table
        rows, kinds = [], {}
    if rows:
        pages = sum(c for _, c in rows)
        print(
            f"  database pages per processed event: {pages / len(events):.2f}; by table/index: "
            + ", ".join(f"{name} {c / len(events):.2f}" for name, c in rows[:8])
        )
        if kinds:
            print("  events table pages by type: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    engine.close()


def profile(program, members, events, workdir: Path, args) -> None:
    engine = open_engine(program, workdir / "profile.db", "NORMAL", members)
    warm, rest = events[:500], events[500:]
    run_process(engine, warm)
    prof = cProfile.Profile()
    prof.enable()
    run_process(engine, rest)
    prof.disable()
    print_profile(prof, args.top, f"Engine.process, {len(rest):,} events, 1 commit/event, NORMAL")
    prof = cProfile.Profile()
    prof.enable()
    run_preview(engine, rest)
    prof.disable()
    print_profile(prof, min(args.top, 25), f"Engine.preview, {len(rest):,} events")
    engine.close()
    sql_split(program, members, events, workdir, 15)


# ------------------------------------------------------------------ main


def _revision() -> str:
    """The code measured: the git commit, and "+ changes" when loyalty_engine/ has uncommitted edits."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "loyalty_engine"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in loyalty_engine/" if dirty else "")


def _environment() -> dict:
    return {
        "revision": _revision(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "sqlite": sqlite3.sqlite_version,
        "date": dt.date.today().isoformat(),
    }


def summarise(rounds: list[dict]) -> dict[str, dict]:
    out = {}
    for name in rounds[0]["modes"]:
        per = [r["modes"][name] for r in rounds]
        us = [p["seconds"] / p["events"] * 1e6 for p in per if p["events"]]
        if not us:
            continue
        rates = [1e6 / u for u in us]
        row = {
            "events": per[0]["events"],
            "events_per_s": statistics.median(rates),
            "us_per_event": statistics.median(us),
            "us_min": min(us),
            "us_max": max(us),
        }
        if "block_us_median" in per[0]:  # the interleaved modes: the median block, over rounds
            row["block_us_median"] = statistics.median(p["block_us_median"] for p in per)
        if name == "cli":
            row["wall_seconds"] = statistics.median(p["wall_seconds"] for p in per)
            row["startup_seconds"] = statistics.median(p["startup_seconds"] for p in per)
            row["events_per_s_with_startup"] = per[0]["events"] / row["wall_seconds"]
        out[name] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="purchases (default 100,000)")
    ap.add_argument("--members", type=int, default=10_000, help="members (default 10,000)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--rounds", type=int, default=3, help="rounds on fresh databases (default 3)")
    ap.add_argument("--batch", type=int, default=500, help="events per commit in the batched modes (default 500)")
    ap.add_argument("--full-events", type=int, default=20_000, help="events run at synchronous=FULL (default 20,000)")
    ap.add_argument("--block", type=int, default=5_000, help="events per interleaving block (default 5,000)")
    ap.add_argument("--no-cli", action="store_true", help="skip the 'loyalty run' subprocess")
    ap.add_argument("--quick", action="store_true", help="5,000 events, 1,000 members, 2 rounds")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    ap.add_argument("--profile", action="store_true", help="cProfile process() and preview() instead of timing")
    ap.add_argument("--top", type=int, default=40, help="rows of the profile (default 40)")
    ap.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.members, args.rounds = min(args.events, 2000), min(args.members, 500), min(args.rounds, 2)
        args.full_events, args.block = min(args.full_events, 500), min(args.block, 500)
    if min(args.events, args.members, args.rounds, args.batch, args.block) < 1:
        ap.error("--events, --members, --rounds, --batch and --block must be positive")
    args.full_events = min(args.full_events, args.events)
    env = _environment()
    say = (lambda *a, **k: None) if args.json else print

    say(
        f"canonical program on Engine + SQLite: {args.events:,} events, {args.members:,} members, "
        f"seed {args.seed}, {args.rounds} rounds, {env['date']}"
    )
    say(
        f"Python {env['python']} ({env['implementation']}), SQLite {env['sqlite']}, {env['machine']}, "
        f"{env['cpus']} CPUs, {env['platform']}"
    )
    say(f"code: {env['revision']}; load average at start {env['load_average']}")
    t = time.perf_counter()
    members = generate_members(args.members, args.seed)
    events = generate_events(args.events, members, args.seed)
    mix = describe(events, members)
    say(f"generated in {time.perf_counter() - t:.1f} s; mix: " + ", ".join(f"{k} {v:.3g}" for k, v in mix.items()))
    program = load_program(CANONICAL_LOY)

    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-", dir=args.dir))
    try:
        if args.profile:
            profile(program, members, events, workdir, args)
            return 0
        raw: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
        rounds = []
        for r in range(args.rounds):
            # the raw reference is cheap: measured every round, so it sees the same machine
            raw["NORMAL"].append(raw_sqlite(workdir / f"raw-normal-{r}.db", "NORMAL", min(3000, 10 * args.events)))
            raw["FULL"].append(raw_sqlite(workdir / f"raw-full-{r}.db", "FULL", min(300, args.events)))
            rounds.append(one_round(program, members, events, workdir, args, r))
            shutil.rmtree(workdir / f"round{r}", ignore_errors=True)
        summary = summarise(rounds)
        structuring = time_structuring(program, events[: min(len(events), 20_000)])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    normal = summary["normal"]
    result = {
        "environment": env,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "mix": mix,
        "modes": summary,
        "labels": {k: v.format(batch=args.batch) for k, v in MODES.items()},
        "raw_sqlite_commits_per_s": {k: statistics.median(v) for k, v in raw.items()},
        "raw_sqlite_commits_per_s_rounds": raw,
        "raw_sqlite_canonical_md": RAW_SQLITE_CANONICAL,
        "to_event_us": structuring,
        "totals_last_round": rounds[-1]["totals"],
        "setup_seconds": statistics.median(r["setup_seconds"] for r in rounds),
        "db_bytes_last_round": rounds[-1]["db_bytes"],
        "goal_normal_events_per_s": GOAL_NORMAL,
        "goal_met": normal["events_per_s"] >= GOAL_NORMAL,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    events_n, points, coupons = rounds[-1]["totals"]["normal"]
    say(
        f"setup per round: {result['setup_seconds']:.1f} s for 3 databases of {args.members:,} members; "
        f"after a round the NORMAL database holds {events_n:,} events, {points:,} points, {coupons:,} coupons "
        f"({rounds[-1]['db_bytes']['normal'] / 2**20:.0f} MiB); the batched one is identical"
    )
    say()
    say(f"median over {args.rounds} rounds (min-max of us/event); blocks of {args.block:,} events interleaved")
    say(f"  {'mode':<50} {'events':>8} {'events/s':>9} {'us/event':>9} {'min':>8} {'max':>8}")
    for name, row in summary.items():
        label = result["labels"][name]
        say(
            f"  {label:<50} {row['events']:8,} {row['events_per_s']:9,.0f} {row['us_per_event']:9.1f} "
            f"{row['us_min']:8.1f} {row['us_max']:8.1f}"
        )
    if "full" in summary and summary["full"]["events"] < args.events:
        say(f"  (FULL runs on every k-th block only: {summary['full']['events']:,} events, interleaved with the rest)")
    if "cli" in summary:
        c = summary["cli"]
        say(
            f"  (loyalty run: {c['wall_seconds']:.1f} s wall including {c['startup_seconds']:.2f} s of interpreter "
            f"start-up and program load = {c['events_per_s_with_startup']:,.0f} events/s; the row excludes start-up)"
        )
    say(f"  of which Engine.to_event (JSON -> Event, cattrs): {structuring:.1f} us/event, in every mode")
    say()
    say(
        f"raw sqlite3 reference, this run (3 rows per BEGIN IMMEDIATE, executemany, WAL): "
        f"NORMAL {statistics.median(raw['NORMAL']):,.0f} commits/s, FULL {statistics.median(raw['FULL']):,.0f} "
        "commits/s (medians over rounds); "
        f"CANONICAL.md measured ~{RAW_SQLITE_CANONICAL:,} at NORMAL"
    )
    say(
        f"goal (issue 3): process at NORMAL >= {GOAL_NORMAL:,} events/s: "
        f"{'met' if result['goal_met'] else 'NOT met'} ({normal['events_per_s']:,.0f} events/s, "
        f"{normal['events_per_s'] / GOAL_NORMAL:.2f}x the goal)"
    )
    return 0


def time_structuring(program: Program, events: list[dict]) -> float:
    """Microseconds per event of Engine.to_event alone (decoded JSON -> Event)."""
    engine = Engine.open(program, ":memory:", clock=lambda: CLOCK)
    to_event = engine.to_event
    t = time.perf_counter()
    for e in events:
        to_event(e)
    us = (time.perf_counter() - t) / max(1, len(events)) * 1e6
    engine.close()
    return us


if __name__ == "__main__":
    sys.exit(main())
