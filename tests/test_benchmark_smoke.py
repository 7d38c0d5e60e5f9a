"""The canonical benchmark program gives the same points and coupons as the hand-written function.

No timing here: this proves, on a few hundred seeded purchases, that
``benchmarks/canonical.loy`` and ``benchmarks/canonical.py:hand_written`` implement
the same 13 rules, so the benchmark compares like with like.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611


def _load_canonical_module():
    return _load_benchmark("canonical")


@pytest.fixture(scope="module")
def canonical():
    return _load_canonical_module()


@pytest.mark.parametrize("seed", [SEED, 7])
def test_canonical_program_matches_hand_written(canonical, seed):
    print(f"seed {seed}")
    program = canonical.load_canonical()
    assert len(program.checked.rules) == 13
    pairs = canonical.generate(500, seed)
    mismatch = canonical.first_mismatch(program, pairs)
    assert mismatch is None, f"seed {seed}: engine {mismatch[2]} != hand-written {mismatch[3]} for {mismatch[0]!r}"


def test_workload_exercises_every_rule(canonical):
    pairs = canonical.generate(500, SEED)
    counts = canonical.coverage(pairs)
    # every rule's condition holds somewhere (the cap and birthday-claimed too), so equality means something
    assert all(v > 0 for v in counts.values()), counts


def test_generator_is_reproducible(canonical):
    a = canonical.generate(50, 3)
    b = canonical.generate(50, 3)
    assert [(e, c) for e, c in a] == [(e, c) for e, c in b]
    assert canonical.generate(50, 4) != a


# ------------------------------------------------------------------ the stateful benchmarks (no timing asserted)


def _load_benchmark(name: str):
    module_name = f"loyalty_benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def test_store_benchmark_runs_and_prints_figures(capsys, tmp_path):
    print(f"seed {SEED}")
    store = _load_benchmark("store")
    argv = ["--events", "240", "--members", "40", "--rounds", "1", "--block", "80", "--batch", "40"]
    argv += ["--full-events", "80", "--seed", str(SEED), "--dir", str(tmp_path)]
    assert store.main(argv) == 0
    out = capsys.readouterr().out
    for label in ("synchronous=NORMAL", "synchronous=FULL", "store.batch() of 40", "preview", "loyalty run --batch 40"):
        assert label in out, out
    assert "events/s" in out and "raw sqlite3 reference" in out and f"SQLite {store.sqlite3.sqlite_version}" in out
    assert list(tmp_path.iterdir()) == []  # the databases are removed


def test_store_benchmark_json(capsys, tmp_path):
    store = _load_benchmark("store")
    argv = ["--events", "120", "--members", "30", "--rounds", "1", "--block", "60", "--batch", "30"]
    argv += ["--full-events", "60", "--no-cli", "--json", "--dir", str(tmp_path)]
    assert store.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    modes = result["modes"]
    assert set(modes) == {"normal", "full", "batch", "preview"}
    assert modes["normal"]["events"] == 120 and modes["full"]["events"] == 60
    assert all(m["events_per_s"] > 0 and m["us_per_event"] > 0 for m in modes.values())
    # the same events give the same ledger, one commit per event or batched
    assert result["totals_last_round"]["normal"] == result["totals_last_round"]["batch"]
    assert result["totals_last_round"]["normal"][0] == 120


def test_store_benchmark_workload_is_reproducible():
    store = _load_benchmark("store")
    members = store.generate_members(50, SEED)
    events = store.generate_events(200, members, SEED)
    assert events == store.generate_events(200, store.generate_members(50, SEED), SEED)
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)  # in time order
    joined = {m.id: m.joined for m in members}
    assert all(
        store.dt.datetime.fromisoformat(e["at"]).astimezone(store.TZ).date() >= joined[e["member"]] for e in events
    )


def test_triggers_benchmark_runs_and_matches_the_data(capsys, tmp_path):
    triggers = _load_benchmark("triggers")
    assert triggers.main(["--members", "3000", "--seed", str(SEED), "--json", "--dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    print(f"seed {SEED}")
    run = result["run"]
    report = run["report"]
    # every member is either evaluated or ruled out by the trigger prefilter, which must rule some out
    assert report["members_checked"] + report["members_skipped"] == 3000
    assert 0 < report["members_skipped"] < 3000
    assert run["seconds"] > 0 and run["maxrss_mb"] > 0
    assert run["again"]["already_done"] is True and run["again"]["fired"] == {}
    # what the engine did equals what the generated data says it should do
    assert all(c["expected"] == c["got"] for c in result["checks"]), result["checks"]
    assert sum(run["report"]["fired"].values()) > 0
    assert list(tmp_path.iterdir()) == []


def test_simulate_benchmark_runs_and_prints_figures(capsys, tmp_path):
    simulate = _load_benchmark("simulate")
    assert simulate.main(["--members", "30", "--months", "2", "--dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    small, big = data["results"]
    assert small["members"] == big["members"] == 30 and big["events"] > small["events"] > 0
    assert big["events_per_s"] > 0 and big["peak_mb"] > 0
