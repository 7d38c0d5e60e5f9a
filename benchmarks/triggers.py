"""One day of time-driven work over a large member base: ``Engine.run_triggers`` at scale.

``benchmarks/triggers.loy`` is a coffee chain's program with points that expire
12 months after earning, a yearly tier review with grace, and five retention
triggers (birthday, win-back with the churn score, points expiring, onboarding,
gold at risk). This script

1. **builds** a database of ``--members`` members (default 1,000,000) straight
   into the store's tables (``executemany`` on the store connection, one
   transaction per 20,000 members): joined dates, birthdays, tiers and review
   dates, last purchases, balances and lifetime statistics on the member row,
   and behind them one ledger entry, one open lot (expiring 12 months after
   earning) and one activity row per purchase of the last 12 months. Trigger
   firings of earlier days are seeded as a daily run would have left them
   (win-back every 90 days, the weekly expiry reminder, onboarding once), so
   the day measured is an ordinary day, not the first day of the program;
2. **runs** ``run_triggers`` for that day (2025-09-01, a Monday and the 1st, so
   the weekly and monthly triggers run too) in a fresh child process, and
   reports its wall time and the child's peak resident memory
   (``VmHWM``, else ``ru_maxrss``), with what it did (expired, reviewed, fired) beside what the
   generated data says it should do;
3. **runs it again** for the same day in the same process: the day is done, so
   this should take no time.

No figure is asserted: this prints. Goal (issue 3): under 60 s and 500 MB for
1,000,000 members.

    python benchmarks/triggers.py                       # 1,000,000 members (builds ~1 GB, minutes)
    python benchmarks/triggers.py --members 100000      # a tenth
    python benchmarks/triggers.py --quick               # 20,000 members, seconds
    python benchmarks/triggers.py --members 100000 --tracemalloc   # also the Python heap peak (slower run)
    python benchmarks/triggers.py --members 100000 --profile       # cProfile of run_triggers
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import functools
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from loyalty_engine.default_plugins import scoring
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.history import shift

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling scripts, as profile_canonical.py does

import store as store_bench  # noqa: E402 - its profile printer and environment report

TRIGGERS_LOY = HERE / "triggers.loy"
DEFAULT_SEED = 20240611
DAY = dt.date(2025, 9, 1)  # a Monday and the 1st of the month: every trigger's schedule includes it
TZ = ZoneInfo("Asia/Shanghai")
CHUNK = 20_000  # members per build transaction
SCALE = 10_000  # activity statistics are stored in 1/10000 units
GOAL_SECONDS = 60
GOAL_MB = 500

TIERS = ("member", "silver", "gold")
THRESHOLDS = (0, 1000, 5000)
# spend per purchase (CNY) by kind of customer: (share, low, high)
SPENDERS = ((0.60, 15, 80), (0.30, 40, 250), (0.10, 200, 1500))


def _local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


@functools.cache
def _day_facts(day: dt.date, ago: int) -> tuple[str, dt.date, str, bool]:
    """For a purchase ``ago`` days before ``day``: the local day, its lot's expiry, and whether it is in the window."""
    earned_on = day - dt.timedelta(days=ago)
    expires = shift(earned_on, 12, "month")
    return earned_on.isoformat(), expires, expires.isoformat(), earned_on > shift(day, -12, "month")


@functools.cache
def _stamp(day: dt.date, ago: int, hour: int, minute: int) -> str:
    """The UTC time of a purchase at ``hour:minute`` local, ``ago`` days before ``day``."""
    return _local(day - dt.timedelta(days=ago), hour, minute).astimezone(dt.UTC).isoformat()


def _key(name: str) -> str:
    return f"trigger:{name}"


# ------------------------------------------------------------------ the member base


class Expected:
    """What the generated data says the day should do (counted while generating)."""

    def __init__(self):
        self.counts = dict.fromkeys(
            (
                "members_expiring",
                "points_expiring",
                "review_due",
                "Happy birthday",
                "Win back",
                "Points expiring",
                "Second visit nudge",
                "Gold at risk",
            ),
            0,
        )
        self.rows = dict.fromkeys(("members", "ledger", "lots", "activity", "firings"), 0)


def _member_rows(i: int, rng: random.Random, day: dt.date, version: str, ids, expected: Expected):
    """One member's rows: (member, ledger entries, lots, activity rows, firings)."""
    mid = f"m{i:07d}"
    # joined: 3% in the last 90 days (onboarding), the rest up to 8 years ago
    joined_days = rng.randint(0, 89) if rng.random() < 0.03 else rng.randint(90, 3000)
    joined = day - dt.timedelta(days=joined_days)
    birthday = dt.date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28))
    r = rng.random()
    low, high = SPENDERS[-1][1:]
    for share, lo, hi in SPENDERS:
        if r < share:
            low, high = lo, hi
            break
        r -= share
    # purchases of the last 12 months (days ago, 1..365; day 365 = 2024-09-01, whose lots expire today)
    horizon = min(365, joined_days)
    segment = rng.random()
    if joined_days < 90:
        n = rng.choice((0, 1, 1, 2, 3))
        days_ago = sorted((rng.randint(0, joined_days) for _ in range(n)), reverse=True)
        days_ago = [max(1, d) for d in days_ago] if joined_days else []
    elif segment < 0.55:  # active: bought in the last 59 days
        last = rng.randint(1, 59)
        days_ago = sorted({last, *(rng.randint(last, horizon) for _ in range(rng.randint(0, 6)))}, reverse=True)
    elif segment < 0.80:  # lapsing: last purchase 60 days to a year ago
        last = rng.randint(60, max(60, horizon))
        days_ago = sorted({last, *(rng.randint(last, max(last, horizon)) for _ in range(rng.randint(0, 2)))})[::-1]
        days_ago = [d for d in days_ago if d <= 365]
    else:  # lapsed longer ago: nothing in the window
        days_ago = []
    older_purchases = rng.randint(0, 40) if joined_days > 365 else 0
    if not days_ago and joined_days > 365:
        older_purchases = max(1, older_purchases)

    ledger, lots, activity, firings = [], [], [], []
    window_spend = Decimal(0)
    points_total = 0
    expiring_today = False
    for k, ago in enumerate(days_ago):
        earned_iso, expires, expires_iso, in_window = _day_facts(day, ago)
        at = _stamp(day, ago, rng.randint(7, 21), rng.randrange(60))
        cents = rng.randint(low * 100, high * 100)
        spend = Decimal(cents).scaleb(-2)
        points = cents // 100
        event = f"p-{mid}-{k}"
        entry_id = next(ids)
        ledger.append((entry_id, mid, "points", "earn", str(points), at, earned_iso, event, "Base earn", version))
        lots.append((entry_id, mid, "points", str(points), str(points), earned_iso, None, expires_iso))
        activity.append((mid, earned_iso, event, cents * 100, SCALE, SCALE, 0, 0, points * SCALE, 0))
        points_total += points
        if in_window:
            window_spend += spend
        if expires <= day:
            expiring_today = True
            expected.counts["points_expiring"] += points
    expected.counts["members_expiring"] += expiring_today
    older_spend = Decimal(older_purchases * rng.randint(low, high))  # their typical basket, that many times
    purchases = len(days_ago) + older_purchases
    lifetime = {}
    if purchases:
        lifetime = {
            "points_earned": str(points_total + int(older_spend)),
            "purchases": str(purchases),
            "spend": str(window_spend + older_spend),
            "visits": str(purchases),
        }
    if days_ago:
        last_purchase = _local(day - dt.timedelta(days=days_ago[-1]), 18)
        first_purchase = (
            _local(joined + dt.timedelta(days=1), 12)
            if older_purchases
            else _local(day - dt.timedelta(days=days_ago[0]), 12)
        )
    elif older_purchases:
        last_purchase = _local(day - dt.timedelta(days=rng.randint(366, max(366, joined_days))), 18)
        first_purchase = _local(joined + dt.timedelta(days=1), 12)
    else:
        last_purchase = first_purchase = None
    # tier: what the 12-month spend qualifies for, one level above for a quarter (they lapse at review)
    level = max(j for j, t in enumerate(THRESHOLDS) if window_spend >= t)
    if level < 2 and rng.random() < 0.25:
        level += 1
    tier = TIERS[level]
    tier_review = day + dt.timedelta(days=rng.randint(0, 364))
    tier_since = max(joined, shift(tier_review, -12, "month"))
    if tier_review <= day:
        expected.counts["review_due"] += 1

    # what today's triggers should do, and the firings earlier days left behind
    today = day
    if (birthday.month, birthday.day) == (today.month, today.day):
        expected.counts["Happy birthday"] += 1
    if last_purchase is not None:
        since = (today - last_purchase.date()).days
        if since >= 60:
            phase = (since - 60) % 90
            if phase:
                firings.append((mid, _key("Win back"), _local(today - dt.timedelta(days=phase)).isoformat(), None))
            else:
                n12 = sum(_day_facts(day, ago)[3] for ago in days_ago)
                facts = {"days_since_last": since, "purchases_12m": n12, "spend_12m": window_spend}
                if scoring.churn_risk(facts) > Decimal("0.7"):
                    expected.counts["Win back"] += 1
    open_dues = [due for due in (_day_facts(day, ago)[1] for ago in days_ago) if due > today]
    if open_dues and min(open_dues) <= today + dt.timedelta(days=30):
        if min(open_dues) > today + dt.timedelta(days=23):  # came into the 30-day window this week
            expected.counts["Points expiring"] += 1
        else:  # last Monday's run reminded them
            firings.append((mid, _key("Points expiring"), _local(today - dt.timedelta(days=7)).isoformat(), None))
    if 7 <= joined_days <= 90 and purchases < 2:
        if joined_days == 7:
            expected.counts["Second visit nudge"] += 1
        else:
            at = _local(joined + dt.timedelta(days=7)).isoformat()
            firings.append((mid, _key("Second visit nudge"), at, None))
    if tier == "gold" and (tier_review - today).days <= 60 and window_spend < 5000:
        if (tier_review - today).days >= 30:
            expected.counts["Gold at risk"] += 1
        else:  # last month's run
            firings.append((mid, _key("Gold at risk"), _local(shift(today, -1, "month")).isoformat(), None))

    balances = {"points": str(sum(int(lot[4]) for lot in lots))} if lots else {}
    member = (
        mid,
        f"Member {i}",
        joined.isoformat(),
        birthday.isoformat(),
        f"m{i}@example.com",
        f"+86 138 {i // 10000:04d} {i % 10000:04d}",
        "{}",
        tier,
        tier_since.isoformat(),
        tier_review.isoformat(),
        None,
        None if first_purchase is None else first_purchase.astimezone(dt.UTC).isoformat(),
        None if last_purchase is None else last_purchase.astimezone(dt.UTC).isoformat(),
        None if last_purchase is None else last_purchase.astimezone(dt.UTC).isoformat(),
        json.dumps(balances, sort_keys=True),
        "{}",
        json.dumps(lifetime, sort_keys=True),
        _local(joined, 9).astimezone(dt.UTC).isoformat(),
    )
    return member, ledger, lots, activity, firings


_SQL = {
    "members": "INSERT INTO members (id, name, joined, birthday, email, phone, attributes, tier, tier_since, "
    "tier_review, grace_until, first_purchase, last_purchase, last_activity, balances, debts, lifetime, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "ledger": "INSERT INTO ledger (id, member, balance, kind, amount, at, day, event, rule, program) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "lots": "INSERT INTO lots (id, member, balance, amount, remaining, earned_on, releases_on, expires_on, open) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
    "activity": "INSERT INTO activity (member, day, event, spend, visits, purchases, nights, refunds, points_earned, "
    "points_redeemed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "firings": "INSERT INTO firings (member, key, at, event) VALUES (?, ?, ?, ?)",
}


def build(path: Path, members: int, seed: int, day: dt.date, quiet: bool) -> dict:
    """Create the database and fill it; returns row counts, the expected work and the build time."""
    t0 = time.perf_counter()
    program = load_program(TRIGGERS_LOY)
    engine = Engine.open(program, path, synchronous="NORMAL")  # creates the schema and the program row
    store = engine.store
    conn = store.conn
    rng = random.Random(seed)
    expected = Expected()
    ids = iter(range(1, 1 << 62))
    for start in range(0, members, CHUNK):
        rows: dict[str, list] = {name: [] for name in _SQL}
        for i in range(start, min(members, start + CHUNK)):
            member, ledger, lots, activity, firings = _member_rows(i, rng, day, program.version, ids, expected)
            rows["members"].append(member)
            rows["ledger"] += ledger
            rows["lots"] += lots
            rows["activity"] += activity
            rows["firings"] += firings
        with store.transaction():
            for name, sql in _SQL.items():
                conn.executemany(sql, rows[name])
                expected.rows[name] += len(rows[name])
        if not quiet:
            done = min(members, start + CHUNK)
            print(f"\r  building: {done:,}/{members:,} members", end="", file=sys.stderr, flush=True)
    if not quiet:
        print("\r" + " " * 50 + "\r", end="", file=sys.stderr, flush=True)
    conn.execute("ANALYZE")
    engine.close()
    return {
        "seconds": time.perf_counter() - t0,
        "rows": expected.rows,
        "expected": expected.counts,
        "bytes": os.path.getsize(path),
    }


# ------------------------------------------------------------------ the measured run (a child process)


def _rss_mb() -> float:
    """Current resident set size of this process (MB), from /proc where there is one."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _maxrss_mb() -> float:
    """Peak resident set size of this process (MB).

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` carries the parent's peak
    over fork and exec, so a child started by a big parent would report the parent's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def measure(path: Path, day: dt.date, synchronous: str, trace: bool, quiet: bool) -> dict:
    """run_triggers for ``day`` on ``path``, then again; time, memory and what it did."""
    import tracemalloc

    rss_start = _rss_mb()
    program = load_program(TRIGGERS_LOY)
    engine = Engine.open(program, path, synchronous=synchronous, clock=lambda: _local(day, 6))
    rss_before = _rss_mb()
    checked = [0]

    def progress(n: int) -> None:
        checked[0] += n
        if not quiet and checked[0] % 100_000 < n:
            print(f"\r  run_triggers: {checked[0]:,} members", end="", file=sys.stderr, flush=True)

    if trace:
        tracemalloc.start()
    t = time.perf_counter()
    report = engine.run_triggers(day, progress=progress)
    seconds = time.perf_counter() - t
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    if not quiet:
        print("\r" + " " * 50 + "\r", end="", file=sys.stderr, flush=True)
    maxrss = _maxrss_mb()
    t = time.perf_counter()
    again = engine.run_triggers(day)
    again_seconds = time.perf_counter() - t
    conn = engine.store.conn
    outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    coupons = conn.execute("SELECT count(*) FROM coupons").fetchone()[0]
    engine.close()
    return {
        "seconds": seconds,
        "members_per_s": (report.members_checked + report.members_skipped) / seconds if seconds else None,
        "rss_start_mb": rss_start,
        "rss_before_mb": rss_before,
        "maxrss_mb": maxrss,
        "tracemalloc_peak_mb": heap_peak,
        "report": report.to_dict(),
        "again_seconds": again_seconds,
        "again": again.to_dict(),
        "outbox": outbox,
        "coupons": coupons,
    }


def measure_in_child(path: Path, day: dt.date, synchronous: str, trace: bool, quiet: bool) -> dict:
    """``measure`` in a fresh interpreter, so its peak memory is the run's alone (not the build's)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(path), "--day", day.isoformat()]
    cmd += ["--synchronous", synchronous] + (["--tracemalloc"] if trace else []) + (["--json"] if quiet else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the measuring child failed with status {proc.returncode}")
    return json.loads(proc.stdout)


def profile(path: Path, day: dt.date, synchronous: str, top: int) -> None:
    program = load_program(TRIGGERS_LOY)
    engine = Engine.open(program, path, synchronous=synchronous, clock=lambda: _local(day, 6))
    prof = cProfile.Profile()
    prof.enable()
    report = engine.run_triggers(day)
    prof.disable()
    engine.close()
    title = f"Engine.run_triggers, {report.members_checked:,} members"
    store_bench.print_profile(prof, top, title)
    print("  " + json.dumps(report.to_dict()))


# ------------------------------------------------------------------ main


def _checks(expected: dict, report: dict) -> list[tuple[str, object, object]]:
    fired = report["fired"]
    rows = [
        ("members with points expiring", expected["members_expiring"], report["expired_members"]),
        ("points expired", expected["points_expiring"], int(Decimal(report["expired"].get("points", "0")))),
    ]
    for name in ("Happy birthday", "Win back", "Points expiring", "Second visit nudge", "Gold at risk"):
        rows.append((f"fired: {name}", expected[name], fired.get(name, 0)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=1_000_000, help="members (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--day", type=dt.date.fromisoformat, default=DAY, help=f"the day to run (default {DAY})")
    ap.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="(default FULL, the engine's)")
    ap.add_argument("--quick", action="store_true", help="20,000 members")
    ap.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (a second, slower run)")
    ap.add_argument("--profile", action="store_true", help="cProfile run_triggers instead of measuring")
    ap.add_argument("--top", type=int, default=40, help="rows of the profile (default 40)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    ap.add_argument("--dir", type=Path, default=None, help="where the database goes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the database (its path is printed)")
    ap.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.day, args.synchronous, args.tracemalloc, args.json)))
        return 0
    if args.quick:
        args.members = min(args.members, 20_000)
    if args.members < 1:
        ap.error("--members must be positive")
    say = (lambda *a, **k: None) if args.json else print

    env = store_bench._environment()
    say(
        f"run_triggers over {args.members:,} members, day {args.day} ({args.day:%A}), seed {args.seed}, "
        f"synchronous={args.synchronous}, {env['date']}"
    )
    say(f"Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs, {env['platform']}")
    say(f"code: {env['revision']}; load average at start {env['load_average']}")
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-triggers-", dir=args.dir))
    path = workdir / "triggers.db"
    try:
        built = build(path, args.members, args.seed, args.day, args.json)
        rows = built["rows"]
        say(
            f"built in {built['seconds']:.1f} s: {rows['members']:,} members, {rows['ledger']:,} ledger entries, "
            f"{rows['lots']:,} open lots, {rows['activity']:,} activity rows, {rows['firings']:,} earlier firings "
            f"({built['bytes'] / 2**20:,.0f} MiB)"
        )
        if args.profile:
            profile(path, args.day, args.synchronous, args.top)
            return 0
        traced = None
        if args.tracemalloc:
            copy = workdir / "traced.db"
            shutil.copyfile(path, copy)
        run = measure_in_child(path, args.day, args.synchronous, False, args.json)
        if args.tracemalloc:
            traced = measure_in_child(copy, args.day, args.synchronous, True, args.json)
    finally:
        if args.keep:
            say(f"database kept: {path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report = run["report"]
    checks = _checks(built["expected"], report)
    result = {
        "environment": env,
        "members": args.members,
        "day": args.day.isoformat(),
        "seed": args.seed,
        "synchronous": args.synchronous,
        "build": built,
        "run": run,
        "traced": traced,
        "checks": [{"what": w, "expected": e, "got": g} for w, e, g in checks],
        "goal": {"seconds": GOAL_SECONDS, "mb": GOAL_MB},
        "goal_met": run["seconds"] < GOAL_SECONDS and run["maxrss_mb"] < GOAL_MB,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    say()
    total = report["members_checked"] + report["members_skipped"]
    say(
        f"run_triggers({args.day}): {run['seconds']:.1f} s wall over {total:,} members "
        f"({run['members_per_s']:,.0f} members/s): {report['members_checked']:,} evaluated, "
        f"{report['members_skipped']:,} ruled out by the store (no due trigger's condition can hold for them)"
    )
    say(
        f"  peak RSS of the process (VmHWM) {run['maxrss_mb']:.0f} MB; before the run {run['rss_before_mb']:.0f} MB "
        f"(interpreter, engine and program loaded; {run['rss_start_mb']:.0f} MB at start)"
    )
    if traced is not None:
        say(
            f"  tracemalloc peak of the Python heap during the run {traced['tracemalloc_peak_mb']:.1f} MB "
            f"(traced run on a copy: {traced['seconds']:.1f} s, slower because of the tracing)"
        )
    say(
        f"  same day again: {run['again_seconds'] * 1e3:.1f} ms (already_done={run['again']['already_done']}, "
        f"fired {sum(run['again']['fired'].values())})"
    )
    say(f"  outbox {run['outbox']:,} messages, {run['coupons']:,} coupons issued")
    say(f"  {'':<32} {'expected':>10} {'engine':>10}")
    for what, want, got in checks:
        shown = "-" if got is None else f"{got:,}"
        say(f"  {what:<32} {want:>10,} {shown:>10}")
    say(
        f"  tier review: {built['expected']['review_due']:,} members due; the engine made {report['upgrades']:,} "
        f"upgrades, {report['downgrades']:,} downgrades and started {report['grace_started']:,} grace periods"
    )
    say("  (expected: counted from the generated data while building it)")
    met = "met" if result["goal_met"] else "NOT met"
    say(
        f"goal (issue 3): under {GOAL_SECONDS} s and {GOAL_MB} MB for 1,000,000 members: {met} at "
        f"{args.members:,} members ({run['seconds']:.1f} s, {run['maxrss_mb']:.0f} MB)"
    )
    if math.isnan(run["rss_before_mb"]):
        say("  (no /proc here: resident memory before the run is unknown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
