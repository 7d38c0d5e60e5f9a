"""The canonical loyalty benchmark: our compiled rules against a hand-written function.

The workload is fixed by /work/shared/bench/CANONICAL.md: 13 rules (written in our
language in ``benchmarks/canonical.loy``), 20,000 seeded purchases. This script

1. generates the purchases as our own ``Event`` / ``MemberContext`` objects;
2. computes points and coupons with a plain hand-written Python function that does
   the same work honestly (reads the event time, converts it to the program
   timezone, loops over the items, Decimal arithmetic, one floor);
3. checks that the compiled program and the function agree on every purchase
   (exit status 1 with the first mismatch otherwise);
4. times both in the same run, in interleaved rounds with alternating order, and
   reports the median microseconds per transaction and the ratio to the function;
5. times loading (parse + check + compile) a generated 1,000-rule file.

    python benchmarks/canonical.py                 # 20,000 transactions, 7 rounds
    python benchmarks/canonical.py --quick         # a few seconds
    python benchmarks/canonical.py --seed 7 --n 50000 --rounds 9
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import gc
import os
import platform
import random
import statistics
import sys
import time
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from loyalty_engine.model import Event, LineItem, Member, MemberContext

HERE = Path(__file__).resolve().parent
CANONICAL_LOY = HERE / "canonical.loy"
PROGRAM_TZ = "Asia/Shanghai"
DEFAULT_SEED = 20240611

# ------------------------------------------------------------------ the input distribution

TIERS = (("bronze", 40), ("silver", 30), ("gold", 20), ("platinum", 10))
# category: (weight, lowest price, highest price, highest quantity)
CATEGORIES = {
    "coffee": (38, 15, 45, 3),
    "bakery": (18, 8, 30, 2),
    "tea": (15, 12, 38, 2),
    "snack": (12, 5, 25, 3),
    "beans": (10, 60, 180, 2),
    "merch": (7, 30, 200, 1),
}
EXPENSIVE_SHARE = 0.25  # of merch lines: a grinder or an espresso machine, 400-3000 CNY
P_ONLINE = 0.30
P_NEW_MEMBER = 0.08  # joined less than 30 days ago
P_CLAIMED = 0.40  # birthday bonus already claimed this calendar year
P_CLAIMED_LAST_YEAR = 0.50  # of the others: claimed last year (must not block this year)


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)).scaleb(-2)


def _pick(rng: random.Random, weighted) -> str:
    names = [n for n, _ in weighted]
    weights = [w for _, w in weighted]
    return rng.choices(names, weights)[0]


def generate(n: int = 20_000, seed: int = DEFAULT_SEED) -> list[tuple[Event, MemberContext]]:
    """``n`` purchases, each with its own member context, reproducible from ``seed``."""
    rng = random.Random(seed)
    tz = ZoneInfo(PROGRAM_TZ)
    utc = dt.UTC
    cat_weights = [(name, spec[0]) for name, spec in CATEGORIES.items()]
    out = []
    for i in range(n):
        # the event time is picked in the program timezone (so weekday and month are
        # uniform there) and handed to the engine in UTC, as a server would store it
        year = rng.choice((2024, 2025))
        month = rng.randint(1, 12)
        day = rng.randint(1, calendar.monthrange(year, month)[1])
        local = dt.datetime(year, month, day, rng.randint(6, 22), rng.randint(0, 59), rng.randint(0, 59), tzinfo=tz)
        at = local.astimezone(utc)
        today = local.date()

        items = []
        for j in range(rng.randint(1, 8)):
            category = _pick(rng, cat_weights)
            _, low, high, max_qty = CATEGORIES[category]
            if category == "merch" and rng.random() < EXPENSIVE_SHARE:
                price = _price(rng, 400, 3000)
                qty = 1
            else:
                price = _price(rng, low, high)
                qty = rng.randint(1, max_qty)
            items.append(
                LineItem(sku=f"{category[:3].upper()}{j}", category=category, quantity=Decimal(qty), unit_price=price)
            )

        if rng.random() < P_NEW_MEMBER:
            days = rng.randint(0, 29)
        else:
            days = rng.randint(30, 3000)
        birthday_month = rng.randint(1, 12)
        birthday = dt.date(rng.randint(1950, 2006), birthday_month, rng.randint(1, 28))
        member = Member(
            id=f"m{i}",
            tier=_pick(rng, TIERS),
            birthday=birthday,
            joined=today - dt.timedelta(days=days),
        )

        history = {}
        if rng.random() < P_CLAIMED:
            # some moment of this local calendar year before the purchase
            start = dt.datetime(year, 1, 1, tzinfo=tz)
            claimed = start + (local - start) * rng.random()
            history["rule:birthday"] = (claimed.astimezone(utc),)
        elif rng.random() < P_CLAIMED_LAST_YEAR:
            last = dt.datetime(year - 1, birthday_month, rng.randint(1, 28), rng.randint(0, 23), tzinfo=tz)
            history["rule:birthday"] = (last.astimezone(utc),)

        event = Event(
            id=f"t{i}",
            type="purchase",
            member=member.id,
            at=at,
            channel="online" if rng.random() < P_ONLINE else "store",
            store=f"S{rng.randint(1, 10)}",
            items=tuple(items),
        )
        out.append((event, MemberContext(member, history=history)))
    return out


# ------------------------------------------------------------------ the same rules, by hand

_TZ = ZoneInfo(PROGRAM_TZ)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_X_TUESDAY = Decimal(2)
_X_SILVER = Decimal("1.25")
_X_GOLD = Decimal("1.5")
_X_PLATINUM = Decimal("2.0")
_X_S7 = Decimal("1.10")
_D50 = Decimal(50)
_D100 = Decimal(100)
_D500 = Decimal(500)


def hand_written(event: Event, context: MemberContext) -> tuple[int, list[str]]:
    """Points and coupons of the 13 canonical rules, written out in plain Python."""
    today = event.at.astimezone(_TZ).date()
    weekday = today.weekday()
    member = context.member
    amount = event.amount
    channel = event.channel

    # earn: base + coffee lines
    earn = amount.to_integral_value(ROUND_FLOOR)
    coffee = _ZERO
    has_coffee = False
    for item in event.items:
        if item.category == "coffee":
            has_coffee = True
            coffee += item.unit_price.to_integral_value(ROUND_FLOOR) * item.quantity
    if has_coffee:
        earn += coffee

    # multipliers
    mult = _ONE
    if weekday == 2:
        mult *= _X_TUESDAY
    tier = member.tier
    if tier == "silver":
        mult *= _X_SILVER
    elif tier == "gold":
        mult *= _X_GOLD
    elif tier == "platinum":
        mult *= _X_PLATINUM
    if event.store == "S7":
        mult *= _X_S7

    # fixed bonuses
    bonus = 0
    if channel == "online" and amount >= _D100:
        bonus += 50
    birthday = member.birthday
    if birthday is not None and birthday.month == today.month:
        claimed = False
        for when in context.history.get("rule:birthday", ()):
            if when.astimezone(_TZ).year == today.year:
                claimed = True
                break
        if not claimed:
            bonus += 200
    joined = member.joined
    if joined is not None and (today - joined).days < 30:
        bonus += 100

    points = int((earn * mult).to_integral_value(ROUND_FLOOR)) + bonus
    if points > 5000:
        points = 5000

    coupons = []
    if amount >= _D500:
        coupons.append("BIG10")
    if weekday >= 5 and channel == "store" and amount >= _D50:
        coupons.append("WKND5")
    return points, coupons


# ------------------------------------------------------------------ equality


def load_canonical():
    from loyalty_engine.program import load_program

    return load_program(CANONICAL_LOY)


def first_mismatch(program, pairs):
    """None when the program and the hand-written function agree on every pair."""
    for event, context in pairs:
        outcome = program.evaluate(event, context)
        want_points, want_coupons = hand_written(event, context)
        if outcome.points != want_points or tuple(outcome.coupons) != tuple(want_coupons):
            return event, context, (outcome.points, tuple(outcome.coupons)), (want_points, tuple(want_coupons))
    return None


def coverage(pairs) -> dict[str, int]:
    """How often each rule's condition holds (from the hand-written view), to show the mix is sane."""
    tz = _TZ
    counts = dict.fromkeys(
        (
            "coffee",
            "tuesday",
            "silver",
            "gold",
            "platinum",
            "S7",
            "online>=100",
            "birthday month",
            "birthday claimed",
            "new member",
            ">=500",
            "weekend store>=50",
            "capped",
        ),
        0,
    )
    for event, context in pairs:
        today = event.at.astimezone(tz).date()
        m = context.member
        counts["coffee"] += any(i.category == "coffee" for i in event.items)
        counts["tuesday"] += today.weekday() == 2
        for t in ("silver", "gold", "platinum"):
            counts[t] += m.tier == t
        counts["S7"] += event.store == "S7"
        counts["online>=100"] += event.channel == "online" and event.amount >= 100
        if m.birthday.month == today.month:
            counts["birthday month"] += 1
            counts["birthday claimed"] += any(
                w.astimezone(tz).year == today.year for w in context.history.get("rule:birthday", ())
            )
        counts["new member"] += (today - m.joined).days < 30
        counts[">=500"] += event.amount >= 500
        counts["weekend store>=50"] += today.weekday() >= 5 and event.channel == "store" and event.amount >= 50
        counts["capped"] += hand_written(event, context)[0] == 5000
    return counts


# ------------------------------------------------------------------ timing


def _null(event, context):
    return None


def make_runners(program):
    fn = program.code.events["purchase"].function
    evaluate = program.evaluate
    hand = hand_written
    null = _null

    def run_null(pairs):
        for e, c in pairs:
            null(e, c)

    def run_hand(pairs):
        for e, c in pairs:
            hand(e, c)

    def run_generated(pairs):
        # the generated function alone: returns the raw tuple (total, coupons, records...)
        for e, c in pairs:
            fn(e, c, None)

    def run_evaluate(pairs):
        # the public API: Program.evaluate builds an Outcome; read points and coupons
        for e, c in pairs:
            o = evaluate(e, c)
            o.points
            o.coupons

    return {
        "hand-written Python function": run_hand,
        "generated function (raw result)": run_generated,
        "Program.evaluate + .points + .coupons": run_evaluate,
        "empty loop + call (overhead)": run_null,
    }


def block_order(names: list[str], block: int, round_: int) -> list[str]:
    """The order implementations run a block in: rotated per block, reversed every other round."""
    k = (block + round_) % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if round_ % 2 else order


def time_interleaved(runners: dict, pairs, rounds: int, block: int = 1000) -> dict[str, list[float]]:
    """Seconds per round per runner.

    Each round walks the transactions in blocks of ``block``; every block is run by
    every implementation back to back, in an order that rotates from block to block
    and reverses from round to round, so a burst of noise from the shared machine
    hits all implementations alike. A round's time is the sum over its blocks.
    """
    names = list(runners)
    for name in names:  # warm-up, untimed
        runners[name](pairs[: min(len(pairs), 2000)])
    blocks = [pairs[i : i + block] for i in range(0, len(pairs), block)]
    results = {name: [] for name in names}
    perf = time.perf_counter
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        gc.collect()
        for b, chunk in enumerate(blocks):
            for name in block_order(names, b, r):
                run = runners[name]
                t0 = perf()
                run(chunk)
                spent[name] += perf() - t0
        for name in names:
            results[name].append(spent[name])
    return results


def time_effects(program, pairs, rounds: int) -> list[float]:
    """Seconds per round to build ``.effects`` (explanations) on fresh outcomes."""
    evaluate = program.evaluate
    times = []
    for _ in range(rounds):
        outcomes = [evaluate(e, c) for e, c in pairs]
        gc.collect()
        t0 = time.perf_counter()
        for o in outcomes:
            o.effects
        times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------ a 1,000-rule program

_GEN_CATEGORIES = tuple(CATEGORIES)


def thousand_rules(n_rules: int = 1000, seed: int = 1, salt: str = "") -> str:
    """A program of ``n_rules`` varied rules; ``salt`` (a comment) changes the text, not the meaning."""
    rng = random.Random(seed)
    lines = [
        f"# generated benchmark program, {n_rules} rules {salt}",
        'program "Thousand rules" {',
        "  currency CNY",
        '  timezone "Asia/Shanghai"',
        "  rounding floor",
        "  balance stamps",
        "}",
    ]
    coupons = [f"C{k:02d}" for k in range(20)]
    for code in coupons:
        lines.append(f'coupon {code} "coupon {code}" {{ discount {rng.randint(5, 20)}% valid 30 days }}')
    conditions = [
        lambda: f'member.tier == "{rng.choice(["silver", "gold", "platinum"])}"',
        lambda: f"amount >= {rng.randint(10, 900)}",
        lambda: f'store == "S{rng.randint(1, 40)}" and channel == "store"',
        lambda: f"weekday(today) == {rng.randint(0, 6)}",
        lambda: f'any item where (category == "{rng.choice(_GEN_CATEGORIES)}" and unit_price >= {rng.randint(5, 60)})',
        lambda: f"month(today) == month(member.birthday) and amount >= {rng.randint(1, 300)}",
        lambda: f"days_since(member.joined) < {rng.randint(7, 90)}",
        lambda: f'count(items where category == "{rng.choice(_GEN_CATEGORIES)}") >= {rng.randint(1, 4)}',
        lambda: (
            f'(channel == "online" or store in ["S1", "S2", "S{rng.randint(3, 40)}"]) and not (amount < {rng.randint(5, 50)})'
        ),
        lambda: f"hour(at) >= {rng.randint(6, 12)} and hour(at) < {rng.randint(13, 22)}",
    ]
    actions = [
        lambda: f"award {rng.randint(1, 3)} points per 1 CNY of amount",
        lambda: (
            f'award 1 point per 1 CNY of sum(floor(unit_price) * quantity of items where category == "{rng.choice(_GEN_CATEGORIES)}")'
        ),
        lambda: f"award {rng.randint(10, 500)} points",
        lambda: f"multiply points by {rng.choice(['1.1', '1.25', '1.5', '2'])}",
        lambda: f"issue coupon {rng.choice(coupons)}",
        lambda: f'award 1 stamp per item where category == "{rng.choice(_GEN_CATEGORIES)}"',
        lambda: f"award {rng.randint(1, 5)} points per 10 CNY of net_amount up to {rng.randint(100, 1000)}",
    ]
    for k in range(n_rules):
        cond = rng.choice(conditions)()
        if rng.random() < 0.3:
            cond = f"{cond} and {rng.choice(conditions)()}"
        body = [rng.choice(actions)() for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.1:
            body.append(rng.choice(["limit once per year", "limit 3 times per month", "limit once per day"]))
        lines.append(f'rule "r{k:04d}" on purchase when {cond} {{')
        lines.extend("  " + b for b in body)
        lines.append("}")
    lines.append('rule "cap" on purchase {\n  cap points at 5000\n}')
    return "\n".join(lines) + "\n"


def time_loading(runs: int, n_rules: int = 1000) -> dict[str, list[float]]:
    """Lark parse, parse to syntax tree, parse + check, and full load (check + compile) of fresh text."""
    from loyalty_engine.language.diagnostics import Reporter, Sources
    from loyalty_engine.language.frontend import check_source
    from loyalty_engine.language.parser import grammar, parse_text
    from loyalty_engine.program import load_program

    grammar.cache_clear()  # time one construction; it is built once per process (lru_cache)
    t0 = time.perf_counter()
    grammar()
    grammar_s = time.perf_counter() - t0

    # it must load cleanly, or the timings mean nothing
    probe = thousand_rules(n_rules, salt="probe")
    result = check_source("thousand.loy", probe)
    if not result.ok:
        for d in result.errors[:5]:
            print(d, file=sys.stderr)
        raise SystemExit("the generated 1,000-rule program does not check")

    out = {"lark": [], "ast": [], "check": [], "load": []}
    for r in range(runs):
        text = thousand_rules(n_rules, salt=f"run {r} pid {os.getpid()} {time.time_ns()}")
        gc.collect()
        t0 = time.perf_counter()
        grammar().parse(text, start="start")
        out["lark"].append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        parse_text(text, "thousand.loy", Reporter(Sources()))
        out["ast"].append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        check_source("thousand.loy", text)
        out["check"].append(time.perf_counter() - t0)
        gc.collect()
        text = text.replace(" pid ", " load pid ", 1)  # fresh text: bypass the program cache
        t0 = time.perf_counter()
        program = load_program("thousand.loy", text)
        out["load"].append(time.perf_counter() - t0)
    out["_grammar"] = [grammar_s]
    out["_bytes"] = [len(text.encode())]
    out["_rules"] = [len(program.checked.rules)]
    return out


# ------------------------------------------------------------------ main

PEERS = (
    ("prototype: ONE generated function (CANONICAL.md)", 2.22, 0.99),
    ("prototype: one function per condition (CANONICAL.md)", 6.59, 2.93),
    ("zen-engine 2.1.3, one expression (CANONICAL.md)", 18.84, 8.4),
    ("zen-engine JDM graph (CANONICAL.md)", 49.33, 22.0),
    ("json-logic (CANONICAL.md)", 115.65, 51.5),
    ("business-rules 1.1.1 (CANONICAL.md)", 131.86, 58.7),
    ("durable-rules 2.0.28 (CANONICAL.md)", 188.43, 83.9),
    ("rule-engine 5.1.0 (CANONICAL.md)", 597.03, 265.8),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--n", type=int, default=20_000, help="transactions (default 20,000)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    ap.add_argument("--load-runs", type=int, default=5, help="runs of the 1,000-rule load (default 5)")
    ap.add_argument("--quick", action="store_true", help="a tiny run: 2,000 transactions, 3 rounds, 2 load runs")
    ap.add_argument("--no-load", action="store_true", help="skip the 1,000-rule loading figures")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.load_runs = min(args.n, 2000), min(args.rounds, 3), min(args.load_runs, 2)

    print(f"seed {args.seed}  n {args.n}  rounds {args.rounds}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.platform(terse=True)}"
    )
    t0 = time.perf_counter()
    pairs = generate(args.n, args.seed)
    print(f"generated {len(pairs):,} transactions in {time.perf_counter() - t0:.2f} s")

    program = load_canonical()
    mismatch = first_mismatch(program, pairs)
    if mismatch is not None:
        event, context, got, want = mismatch
        print("MISMATCH between the compiled program and the hand-written function", file=sys.stderr)
        print(f"  event:   {event!r}", file=sys.stderr)
        print(f"  context: {context!r}", file=sys.stderr)
        print(f"  engine (points, coupons):       {got}", file=sys.stderr)
        print(f"  hand-written (points, coupons): {want}", file=sys.stderr)
        return 1
    points = [hand_written(e, c)[0] for e, c in pairs]
    print(
        f"equality: OK, identical points and coupons on all {len(pairs):,} transactions "
        f"(total points {sum(points):,}, mean {statistics.fmean(points):.1f})"
    )
    cov = coverage(pairs)
    print("rule mix: " + ", ".join(f"{k} {v / len(pairs):.1%}" for k, v in cov.items()))

    runners = make_runners(program)
    times = time_interleaved(runners, pairs, args.rounds)
    eff = time_effects(program, pairs, max(1, min(args.rounds, 3)))
    n = len(pairs)
    us = {name: [t / n * 1e6 for t in ts] for name, ts in times.items()}
    hand_name = "hand-written Python function"
    ratio = {name: statistics.median(a / b for a, b in zip(ts, us[hand_name])) for name, ts in us.items()}

    print()
    print(f"Evaluation, {n:,} transactions, median of {args.rounds} interleaved rounds (us per transaction)")
    print(f"  {'implementation':<44} {'median':>8} {'min':>8} {'max':>8} {'x hand':>8}")
    for name, ts in us.items():
        print(f"  {name:<44} {statistics.median(ts):8.2f} {min(ts):8.2f} {max(ts):8.2f} {ratio[name]:8.2f}")
    eff_us = [t / n * 1e6 for t in eff]
    print(
        f"  {'extra: touching .effects (explanations)':<44} {statistics.median(eff_us):8.2f} {min(eff_us):8.2f} "
        f"{max(eff_us):8.2f}   (on top of evaluate, {len(eff)} rounds)"
    )
    print("  x hand = median over rounds of (this round's time / the hand-written function's time that round)")
    print()
    print("Peers, from CANONICAL.md (another run, same kind of machine; compare the ratios, not the times)")
    for name, t, x in PEERS:
        print(f"  {name:<56} {t:8.2f} {x:8.1f}")

    if not args.no_load:
        load = time_loading(args.load_runs)
        print()
        print(
            f"Loading a generated {load['_rules'][0]:,}-rule file ({load['_bytes'][0] / 1024:.0f} KiB), "
            f"median of {args.load_runs} runs on fresh text (ms)"
        )
        print(f"  {'stage':<44} {'median':>8} {'min':>8} {'max':>8}")
        labels = {
            "lark": "Lark LALR parse only",
            "ast": "parse to syntax tree (Lark + transform)",
            "check": "parse + check",
            "load": "load_program: parse + check + compile",
        }
        for key, label in labels.items():
            ms = [t * 1e3 for t in load[key]]
            print(f"  {label:<44} {statistics.median(ms):8.1f} {min(ms):8.1f} {max(ms):8.1f}")
        print(
            f"  (grammar construction, once per process: {load['_grammar'][0] * 1e3:.0f} ms; "
            "CANONICAL.md: Lark LALR parse of 1,000 rules 327 ms, Earley 12.5 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
