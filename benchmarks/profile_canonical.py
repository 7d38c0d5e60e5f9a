"""Where the time of the canonical program goes, and what would make it faster.

Diagnostics for ``benchmarks/canonical.py``; changes nothing in the engine.

1. prints the generated source of the purchase function;
2. cProfile of ``Program.evaluate`` over the generated transactions (which Python
   functions the evaluation calls, how often, and their own time);
3. ablations: the generated source with one code-generation change applied at a
   time (textual edits of the source, executed in the program's own namespace),
   each checked to give the same points and coupons on every transaction, timed
   interleaved against the function as generated and the hand-written function.
   The gain of each edit is what that change in ``loyalty_engine/engine`` would buy.

    python benchmarks/profile_canonical.py [--n 20000] [--rounds 7] [--seed S] [--no-source]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import statistics
import sys
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import canonical  # noqa: E402

from loyalty_engine.language import builtins as B  # noqa: E402


def _const(ns: dict, value) -> str | None:
    for k, v in ns.items():
        if k.startswith("_k") and v is value:
            return k
    return None


def ablations(source: str, ns: dict) -> dict:
    """Edits of the generated source (name -> function of the source), each one change a code
    generator could make; only those that apply to ``source`` are returned."""
    floor_k = _const(ns, B.floor)
    days_k = _const(ns, B.days_since)
    out = {}

    def edit(name, fn):
        if fn(source) != source:
            out[name] = fn

    # 1. floor(x) of a non-null Decimal inlined as a method call (no Python-level call, no Decimal(x) re-wrap)
    if floor_k:
        edit("inline floor()", lambda s: re.sub(rf"{floor_k}\(([\w.]+)\)", r"\1.to_integral_value(_FLOOR)", s))
    # 2. days_since(member.joined) inlined; no Scope object built per event
    if days_k:
        edit(
            "inline days_since(), no _Scope per event",
            lambda s: re.sub(rf"{days_k}\(_scope, (_t\d+)\)", r"(_today - \1).days", s).replace(
                "    _scope = _Scope(_today, _TZ, _c)\n", ""
            ),
        )

    # 3. integer literals compared with ints (weekday(), days) as int constants, not Decimal
    def int_literals(s):
        s = re.sub(r"(_today\.weekday\(\) (?:==|>=|<=|<|>|!=) )(_k\d+)", r"\1\2_i", s)
        s = re.sub(r"(_t\d+ is not None and _t\d+ < )(_k\d+)", r"\1\2_i", s)
        return s

    edit("int constants for weekday/day comparisons", int_literals)
    # 4. "award 1 point per 1 CNY of X": skip the multiplication by 1
    one_k = next((k for k, v in ns.items() if k.startswith("_k") and isinstance(v, Decimal) and str(v) == "1"), None)
    if one_k:
        edit("drop x1 in 'award 1 point per 1 CNY'", lambda s: s.replace(f"= {one_k} * ", "= "))

    # 5. any item where C + sum(... of items where C): one loop instead of two
    def one_loop(s):
        m = re.search(
            r"    _v(\d+) = False\n    for (_it\d+) in _items:\n        if \((\2)\.category == (_k\d+)\):\n"
            r"            _v\1 = True\n            break\n    if _v\1:\n        _v(\d+) = _ZERO\n"
            r"        for (_it\d+) in _items:\n            if not \(\6\.category == \4\): continue\n"
            r"            _v\5 \+= (.*)\n",
            s,
        )
        if not m:
            return s
        any_v, _, _, cat, sum_v, it2, body = m.groups()
        body = body.replace(it2, "_itx")
        repl = (
            f"    _v{any_v} = False\n    _v{sum_v} = _ZERO\n    for _itx in _items:\n"
            f"        if _itx.category == {cat}:\n            _v{any_v} = True\n            _v{sum_v} += {body}\n"
            f"    if _v{any_v}:\n"
        )
        return s[: m.start()] + repl + s[m.end() :]

    edit("fuse any-item test and item sum into one loop", one_loop)

    # 6. no per-rule record tuples (what fired and with what values) on the hot path
    def no_records(s):
        s = re.sub(r"(?m)^(\s+)(_r\d+) = \((.*), \)$", r"\1\2 = True", s)
        return s

    edit("records as flags, not tuples", no_records)
    # 7. constant fold a transaction cap when it is the only cap
    edit(
        "constant-fold the single cap",
        lambda s: re.sub(r"_cap0 = (_k\d+) if _cap0 is None else min\(_cap0, \1\)", r"_cap0 = \1", s),
    )
    return out


def compile_variant(src: str, base_ns: dict):
    ns = dict(base_ns)
    ns["_FLOOR"] = ROUND_FLOOR
    # int twins of integral Decimal constants, for the "int constants" edit
    ns.update({k + "_i": int(v) for k, v in base_ns.items() if isinstance(v, Decimal) and v == v.to_integral_value()})
    exec(compile(src, "<variant>", "exec"), ns)  # noqa: S102 - our own generated text
    fname = re.match(r"def (\w+)\(", src).group(1)
    return ns[fname], src


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=canonical.DEFAULT_SEED)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-source", action="store_true")
    ap.add_argument("--show-all", action="store_true", help="print the source with every edit applied")
    args = ap.parse_args(argv)
    print(f"seed {args.seed}  n {args.n}  rounds {args.rounds}")

    program = canonical.load_canonical()
    plan = program.code.events["purchase"]
    pairs = canonical.generate(args.n, args.seed)
    if not args.no_source:
        print("\n---- generated source: program.code.events['purchase'].source")
        print(plan.source)

    # ---------------------------------------------------------------- cProfile
    evaluate = program.evaluate
    prof = cProfile.Profile()
    prof.enable()
    for e, c in pairs:
        o = evaluate(e, c)
        o.points
        o.coupons
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
    print("\n---- cProfile of Program.evaluate + .points + .coupons (own time; cProfile inflates call costs)")
    print("\n".join(line for line in buf.getvalue().splitlines() if line.strip())[:4000])

    # ---------------------------------------------------------------- ablations
    ns = program.code.namespace
    edits = ablations(plan.source, ns)
    variants = {"as generated": plan.source, **{name: fn(plan.source) for name, fn in edits.items()}}
    all_src = plan.source
    for fn in edits.values():
        all_src = fn(all_src)
    variants["all of the above"] = all_src
    functions = {}
    for name, src in variants.items():
        fn, _ = compile_variant(src, ns)
        # each variant must give the same points and coupons as the hand-written function
        for e, c in pairs:
            raw = fn(e, c, None)
            want = canonical.hand_written(e, c)
            if int(raw[4]) != want[0] or list(raw[0]) != want[1]:
                print(f"variant {name!r} disagrees on {e.id}: {raw[4]}, {raw[0]} vs {want}")
                return 1
        functions[name] = fn
    if args.show_all:
        print("\n---- the source with every edit applied")
        print(all_src)

    def runner(fn):
        def run(chunk):
            for e, c in chunk:
                fn(e, c, None)

        return run

    def run_hand(chunk):
        hw = canonical.hand_written
        for e, c in chunk:
            hw(e, c)

    from loyalty_engine.engine.outcome import Outcome

    raw_fn = plan.function

    def run_outcome(chunk):
        # what evaluate does at the least: the call plus building the Outcome
        for e, c in chunk:
            Outcome(program, plan, e, c, None, raw_fn(e, c, None))

    def run_evaluate(chunk):
        for e, c in chunk:
            evaluate(e, c)

    def run_evaluate_read(chunk):
        for e, c in chunk:
            o = evaluate(e, c)
            o.points
            o.coupons

    runners = {"hand-written": run_hand, **{name: runner(fn) for name, fn in functions.items()}}
    runners["as generated + Outcome(...)"] = run_outcome
    runners["Program.evaluate"] = run_evaluate
    runners["Program.evaluate + .points + .coupons"] = run_evaluate_read
    times = canonical.time_interleaved(runners, pairs, args.rounds)
    n = len(pairs)
    us = {k: [t / n * 1e6 for t in v] for k, v in times.items()}
    base = us["as generated"]
    print(
        f"\n---- generated-function variants and the API layers, {n:,} transactions, median of {args.rounds} interleaved rounds"
    )
    print(
        f"  {'variant':<48} {'us/tx':>7} {'x hand':>7} {'delta':>7}  (delta: us/tx vs as generated, median of per-round differences)"
    )
    for name, ts in us.items():
        x = statistics.median(a / b for a, b in zip(ts, us["hand-written"]))
        delta = statistics.median(a - b for a, b in zip(ts, base))
        print(f"  {name:<48} {statistics.median(ts):7.2f} {x:7.2f} {delta:+7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
