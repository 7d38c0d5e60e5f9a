"""Rules fuzzing at full size: 100,000 generated and mutated rule files against the property of
tests/rulefuzz.py (only positioned, documented errors; each check under 1 s; no exec/compile of
user text, no import, open or subprocess under an audit hook).

    python benchmarks/fuzz_rules.py --files 100000 --seed 1 [--jobs 2]
    python benchmarks/fuzz_rules.py --seed 1 --case 4711        # replay one case, show its diagnostics

Prints counts (clean / with errors / by error kind), the max and median check time and every
violation with its reproducer; exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import rulefuzz  # noqa: E402


def _chunk(args):
    seed, start, files = args
    summary = rulefuzz.run(seed, files, start=start)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (each warms up and has its own audit hook)")
    ap.add_argument("--case", type=int, help="replay one case: print its text, diagnostics and violations")
    opts = ap.parse_args(argv)

    if opts.case is not None:
        from loyalty_engine.program import check_program

        kind, text = rulefuzz.case(opts.seed, opts.case)
        print(f"seed {opts.seed} case {opts.case} ({kind}, {len(text)} chars):\n{text!r}\n")
        for diag in check_program(rulefuzz.FILE_NAME, text=text).diagnostics:
            print(diag.render())
        rulefuzz.warm_up()
        result = rulefuzz.check_case(text)
        print(f"\nchecked in {result.seconds * 1000:.1f} ms; violations: {result.violations or 'none'}")
        return 1 if result.violations else 0

    print(f"rules fuzzing: seed {opts.seed}, {opts.files} files from case {opts.start}, {opts.jobs} job(s)")
    began = time.perf_counter()
    jobs = max(1, opts.jobs)
    size = -(-opts.files // jobs)
    chunks = [(opts.seed, opts.start + i * size, min(size, opts.files - i * size)) for i in range(jobs)]
    chunks = [c for c in chunks if c[2] > 0]
    if jobs == 1:
        parts = [_chunk(chunks[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
            parts = pool.map(_chunk, chunks)
    total = rulefuzz.Summary()
    for part in parts:
        total.files += part.files
        total.clean += part.clean
        total.with_errors += part.with_errors
        total.times += part.times
        total.failures += part.failures
        total.evaluation_errors += part.evaluation_errors
        for key, value in part.kinds.items():
            total.kinds[key] = total.kinds.get(key, 0) + value
        for key, value in part.by_case_kind.items():
            total.by_case_kind[key] = total.by_case_kind.get(key, 0) + value
    wall = time.perf_counter() - began
    times = sorted(total.times)
    others = total.files - total.clean - total.with_errors
    print(
        f"{total.files} files ({', '.join(f'{v} {k}' for k, v in sorted(total.by_case_kind.items()))}) in {wall:.0f} s"
    )
    print(f"  clean: {total.clean}   with errors: {total.with_errors}   warnings only / no program: {others}")
    print(f"  check time: max {times[-1] * 1000:.1f} ms, median {times[len(times) // 2] * 1000:.2f} ms, ")
    print(
        f"  p99 {times[int(len(times) * 0.99)] * 1000:.1f} ms; over {rulefuzz.TIME_LIMIT} s: "
        f"{sum(t > rulefuzz.TIME_LIMIT for t in times)}"
    )
    print("  files by error kind (top 40):")
    for kind, count in sorted(total.kinds.items(), key=lambda kv: -kv[1])[:40]:
        print(f"    {count:7d}  {kind}")
    print(f"  {len(total.kinds)} error kinds in all")
    if total.evaluation_errors:
        print(f"  clean files whose evaluation raised a documented error: {len(total.evaluation_errors)}")
        for index, error in total.evaluation_errors[:10]:
            print(f"    case {index}: {error}")
    print(f"  violations: {len(total.failures)}")
    for index, _kind, text, violations in total.failures[:50]:
        print(rulefuzz.reproducer(opts.seed, index, text, violations))
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
