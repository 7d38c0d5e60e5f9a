"""The simulator in several processes: the same figures as one process, or one process and the reason."""

import datetime as dt
import json

import pytest

from loyalty_engine.program import load_program
from loyalty_engine.simulate.parallel import member_of, shard_of
from loyalty_engine.simulate.replay import simulate
from tests.test_simulate import BUSY, COFFEE, ROOT, _cli, _history

SUPERMARKET = ROOT / "dsl" / "examples" / "supermarket_zh.loy"
BUBBLE = ROOT / "dsl" / "examples" / "bubble_tea_plugins.loy"


def _both(program, events, members, jobs=3, **options):
    one = simulate(program, events, members, **options)
    split = simulate(program, events, members, jobs=jobs, **options)
    return one, split, split.pop("replay")


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    path = tmp_path_factory.mktemp("busy") / "busy.loy"
    path.write_text(BUSY, encoding="utf-8")
    return load_program(path)


@pytest.mark.parametrize("which", ["coffee", "busy", "bubble", "supermarket_zh"])
def test_the_members_split_over_processes_give_the_figures_of_one(tmp_path, which, busy):
    program = {"coffee": lambda: load_program(COFFEE), "busy": lambda: busy}.get(
        which, lambda: load_program(BUBBLE if which == "bubble" else SUPERMARKET)
    )()
    members, events = _history(tmp_path, program, members=150, months=4, seed=5)
    one, split, how = _both(program, events, members)
    assert how == {"processes": 3, "note": None}
    assert split == one  # every figure: totals, rules, months, snapshots, top members, every member's outcome
    assert sum(one["events"]["applied"].values()) > 1000


def test_a_period_and_bad_lines_come_out_the_same(tmp_path, busy):
    members, events = _history(tmp_path, busy, members=80, months=3, seed=2)
    lines = events.read_text(encoding="utf-8").splitlines()
    lines[10] = "{not json"
    lines[20] = json.dumps({"type": "purchase", "member": "m-x", "at": "2026-01-05T10:00:00+08:00"})  # no id
    lines[30] = json.dumps({"id": "t-bad", "type": "purchase", "at": "2026-01-05T10:00:00+08:00"})  # no member
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = {"start": dt.date(2026, 1, 10), "end": dt.date(2026, 2, 20)}
    one, split, how = _both(program=busy, events=events, members=members, jobs=2, **options)
    assert how["processes"] == 2
    assert split == one
    assert one["events"]["outside_period"] > 0 and [e["line"] for e in one["events"]["error_lines"]][:1] == [11]


@pytest.mark.parametrize(
    "tighter, note",
    [
        (
            ("budget 150 coupons", "budget 5 coupons"),
            "replayed in one process: the budget of rule 'Big basket' could have run out",
        ),
        (("limit 300 total", "limit 3 total"), "replayed in one process: coupon TEA could have reached its total of 3"),
    ],
)
def test_a_program_wide_limit_that_could_be_reached_is_replayed_in_one_process(tmp_path, tighter, note):
    tight = tmp_path / "tight.loy"
    tight.write_text(BUSY.replace(*tighter), encoding="utf-8")
    program = load_program(tight)
    members, events = _history(tmp_path, program, members=120, months=3, seed=4)
    one, split, how = _both(program, events, members)
    assert how["processes"] == 1 and how["note"].startswith(note)
    assert split == one


@pytest.mark.parametrize(
    "line, reason",
    [
        ({"id": "x1", "type": "transfer", "member": "{a}", "to": "{b}", "points": 1}, "transfers points"),
        ({"id": "x2", "type": "redeem_coupon", "code": "NOPE", "purchase": "{p}"}, "without naming its member"),
        ({"id": "x3", "type": "refund", "member": "{b}", "original": "{p}"}, "a purchase of another member"),
    ],
)
def test_a_line_touching_two_members_is_replayed_in_one_process(tmp_path, busy, line, reason):
    members, events = _history(tmp_path, busy, members=60, months=2, seed=3)
    lines = events.read_text(encoding="utf-8").splitlines()
    purchase = next(json.loads(x) for x in lines if '"purchase"' in x)
    other = next(json.loads(x)["member"] for x in lines if json.loads(x).get("member") != purchase["member"])
    text = json.dumps(line).replace("{a}", purchase["member"]).replace("{b}", other).replace("{p}", purchase["id"])
    data = json.loads(text)
    data["at"] = lines[-1] and json.loads(lines[-1])["at"]
    events.write_text("\n".join([*lines, json.dumps(data)]) + "\n", encoding="utf-8")
    one, split, how = _both(busy, events, members, jobs=2)
    assert how["processes"] == 1 and reason in how["note"]
    assert split == one


def test_whose_line_it_is():
    assert member_of({"type": "purchase", "member": "m-1"}) == "m-1"
    assert member_of({"type": "member", "id": "m-2", "name": "王芳"}) == "m-2"
    assert member_of({"type": "purchase", "member": 7}) is None and member_of([1]) is None
    assert {shard_of(f"m-{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_of("王芳", 3) == shard_of("王芳", 3)


def test_the_command_takes_jobs_and_says_when_it_could_not_split(tmp_path):
    program = tmp_path / "tight.loy"
    program.write_text(BUSY.replace("limit 300 total", "limit 3 total"), encoding="utf-8")
    generous = tmp_path / "generous.loy"
    generous.write_text(BUSY, encoding="utf-8")
    members, events = _history(tmp_path, load_program(program), members=80, months=3, seed=6)
    base = ["simulate", program, "--events", events, "--members", members, "--json"]
    one = _cli([*base, "--jobs", "1"])
    auto = _cli(base)  # a small history: one process
    assert one.exit_code == auto.exit_code == 0, one.output
    assert json.loads(one.stdout) == json.loads(auto.stdout) and "replay" not in json.loads(auto.stdout)
    split = _cli(["simulate", generous, "--events", events, "--members", members, "--json", "--jobs", "2"])
    data = json.loads(split.stdout)
    assert data.pop("replay") == {"processes": 2, "note": None}
    assert data == json.loads(_cli(["simulate", generous, "--events", events, "--members", members, "--json"]).stdout)
    fallback = _cli([*base, "--jobs", "2"])
    assert "note: replayed in one process: coupon TEA could have reached its total of 3" in fallback.stderr
    refused = _cli([*base, "--jobs", "none"])
    assert refused.exit_code != 0 and "--jobs: expected a whole number from 1, or auto" in refused.output
