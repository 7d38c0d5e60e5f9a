"""The simulator at scale: ``loyalty simulate`` over a generated history of 1,000,000 events.

For each size the script

1. **generates** a history with ``generate_history`` (seeded; the coffee chain's
   categories and coupons) into a scratch folder: ``--members`` members over
   ``--months`` months for the big run (about 1,000,000 events), and the same
   members over one month for the small one (about a tenth), so the two runs
   differ in events, not in members;
2. **simulates** it in a fresh child process (so the child's memory is its own) with the program's daily work (expiry, tier review, triggers)
   and reports events/s (wall and CPU time of the replay alone) and the child's
   peak resident memory (``VmHWM`` from ``/proc/self/status``).

No figure is asserted: this prints. Goal (issue 5): at least 100,000 events/s
over 1,000,000 events, memory flat in the number of events (it may grow with
members). Generated files are deleted afterwards (``--keep`` keeps them).

    python benchmarks/simulate.py                      # 24,000 members x 12 months, about 1,000,000 events
    python benchmarks/simulate.py --quick              # 1,000 members: seconds
    python benchmarks/simulate.py --program benchmarks/canonical.loy
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COFFEE = ROOT / "dsl" / "examples" / "coffee_chain.loy"
SEED = 20261201


def _vmhwm_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(program: str, folder: str, jobs: int = 1) -> dict:
    import resource

    from loyalty_engine.program import load_program
    from loyalty_engine.simulate.replay import simulate

    prog = load_program(program)
    before = _vmhwm_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    figures = simulate(prog, Path(folder) / "events.jsonl", Path(folder) / "members.jsonl", jobs=jobs)
    wall = time.perf_counter() - wall
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the replay processes, with jobs > 1
    cpu = time.process_time() - cpu + children.ru_utime + children.ru_stime
    events = sum(figures["events"]["applied"].values()) + figures["events"]["errors"]
    return {
        "events": events,
        "members": figures["members"]["count"],
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "events_per_s": round(events / wall),
        "events_per_cpu_s": round(events / cpu),
        "peak_mb": round(_vmhwm_mb(), 1),
        "before_mb": round(before, 1),
        "jobs": jobs,
        "replay": figures.get("replay"),
        # the largest replay process's peak (Linux reports ru_maxrss in KiB); the parent's is peak_mb
        "worker_peak_mb": round(children.ru_maxrss / 1024, 1) if jobs > 1 else None,
        "issued": figures["points"]["issued"],
        "triggers": figures["triggers"],
    }


def run_one(program: Path, folder: Path, jobs: int = 1) -> dict:
    """The replay in a fresh Python process (its memory is its own), which prints its figures as JSON."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(program), str(folder), str(jobs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=24_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--program", type=Path, default=COFFEE)
    parser.add_argument("--quick", action="store_true", help="1,000 members")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="replay processes (simulate(jobs=N)); default 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.members = 1_000
    from loyalty_engine.program import load_program
    from loyalty_engine.simulate.generate import generate_history

    program = load_program(args.program)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="loyalty-sim-bench-"))
    results = []
    try:
        for label, months in (("small", 1), ("big", args.months)):
            folder = scratch / label
            t = time.perf_counter()
            counts = generate_history(folder, members=args.members, months=months, seed=args.seed, program=program)
            generated = time.perf_counter() - t
            result = run_one(args.program, folder, args.jobs)
            result.update(label=label, months=months, generate_s=round(generated, 1), counts=counts)
            results.append(result)
            if not args.json:
                print(
                    f"{label}: {result['events']:,} events, {result['members']:,} members, {months} month(s) "
                    f"(generated in {generated:.1f} s): replay {result['wall_s']} s wall, {result['cpu_s']} s CPU = "
                    f"{result['events_per_s']:,} events/s ({result['events_per_cpu_s']:,} per CPU second); "
                    f"peak RSS {result['peak_mb']} MB (after loading: {result['before_mb']} MB)"
                    + (
                        f"; {args.jobs} processes asked for, {result['replay']['processes']} used"
                        + (f" ({result['replay']['note']})" if result["replay"]["note"] else "")
                        + f", largest replay process {result['worker_peak_mb']} MB"
                        if args.jobs > 1
                        else ""
                    ),
                    flush=True,
                )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"program": str(args.program), "results": results, "loadavg": load}, indent=2))
    else:
        print(f"program {args.program.name}; Python {sys.version.split()[0]}; load average {load[0]:.2f} {load[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
