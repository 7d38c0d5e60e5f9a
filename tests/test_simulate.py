"""The analyst's workbench: the sample history generator and the simulator.

The simulator must agree with the real engine: the same generated history
replayed through ``simulate`` (in memory) and through an ``Engine`` on SQLite
gives the same totals, balances, tiers and coupons.
"""

import contextlib
import datetime as dt
import json
import zoneinfo
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_engine.errors import LoyaltyError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.imports import import_row, read_rows
from loyalty_engine.service.replay import dispatch
from loyalty_engine.simulate.generate import LAPSE_SHARE, generate_history
from loyalty_engine.simulate.replay import Replay, read_history, simulate
from loyalty_engine.store.sqlite import SQLiteStore
from loyalty_engine.wire import _datetime

ROOT = Path(__file__).resolve().parent.parent
COFFEE = ROOT / "dsl" / "examples" / "coffee_chain.loy"
BUBBLE = ROOT / "dsl" / "examples" / "bubble_tea_plugins.loy"  # plugin rewards (cashback), a plugin score

# Short periods, so that four months see expiry, tier reviews with grace, caps, limits and triggers.
BUSY = """
program "Busy Bakery" {
  currency CNY
  timezone "Asia/Shanghai"
  balance stamps
  points expire 2 months after earning
  stamps expire 1 months after last activity
}
tiers by spend over last 1 months {
  member from 0
  silver from 300 earn x1.5
  gold   from 900 earn x2
  review every 1 months grace 1 months
}
coupon BIG10 "10% off" { discount 10%  valid 10 days  min spend 50  limit 2 per member }
coupon TEA "a tea on us" { free item "OOLONG"  valid 20 days  limit 300 total }
rule "Base earn" on purchase { award 1 point per 1 CNY of net_amount }
rule "Coffee double" on purchase when any item where category == "coffee" {
  award 1 point per 1 CNY of items where category == "coffee"
}
rule "Merch bonus" on purchase when any item where category == "merch" {
  award 100 points
  limit 2 times per month
}
rule "Caps" on purchase { cap points at 400 per transaction  cap points at 600 per week }
rule "Stamp" on purchase { award 1 stamp per item where category == "food" }
rule "Big basket" on purchase when net_amount >= 150 { issue coupon BIG10  budget 150 coupons }
trigger "Win back" daily when days_since(member.last_purchase) >= 20 {
  send sms "我们想念您 {member.name}"
  issue coupon TEA
  limit once per 30 days
}
trigger "Weekend nudge" daily when days_since(member.last_purchase) >= 10 and weekday(today) >= saturday {
  send sms "周末愉快 {member.name}"
  limit once per 14 days
}
trigger "Welcome" daily when between(days_since(member.joined), 3, 30) and purchases over lifetime < 1 {
  send sms "Welcome {member.name}"
  limit once per member
}
"""


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    path = tmp_path_factory.mktemp("busy") / "busy.loy"
    path.write_text(BUSY, encoding="utf-8")
    return load_program(path)


def _history(tmp_path, program, members=120, months=4, seed=7):
    folder = tmp_path / "history"
    generate_history(folder, members=members, months=months, seed=seed, program=program)
    return folder / "members.jsonl", folder / "events.jsonl"


# ------------------------------------------------------------------ the generator


def test_generate_is_deterministic_and_sorted(tmp_path):
    a = generate_history(tmp_path / "a", members=60, months=2, seed=3)
    b = generate_history(tmp_path / "b", members=60, months=2, seed=3)
    generate_history(tmp_path / "c", members=60, months=2, seed=4)
    for name in ("members.jsonl", "events.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "c" / "events.jsonl").read_bytes()
    assert a == b and a["purchase"] > 100
    times = [_datetime(json.loads(line)["at"]) for line in (tmp_path / "a" / "events.jsonl").open(encoding="utf-8")]
    assert times == sorted(times)


def test_generate_statistics(tmp_path):
    """Refund share, lapsing members and seasonality are what the generator promises."""
    folder = tmp_path / "h"
    generate_history(folder, members=600, months=12, seed=11)
    members = [json.loads(line) for line in (folder / "members.jsonl").open(encoding="utf-8")]
    events = [json.loads(line) for line in (folder / "events.jsonl").open(encoding="utf-8")]
    purchases = {e["id"]: e for e in events if e["type"] == "purchase"}
    refunds = [e for e in events if e["type"] == "refund"]
    assert 0.02 < len(refunds) / len(purchases) < 0.04
    partial = [r for r in refunds if r.get("items")]
    assert 0.2 < len(partial) / len(refunds) < 0.6
    for r in refunds:  # after their purchase, by the same member
        original = purchases[r["original"]]
        assert _datetime(r["at"]) > _datetime(original["at"]) and r["member"] == original["member"]
    joined = Counter(m["joined"] < "2026-01-01" for m in members)
    assert 0.3 < joined[True] / len(members) < 0.5  # joined before the period, the others during it
    assert any("\u4e00" <= m["name"][0] <= "\u9fff" for m in members)  # Chinese names
    # lapsing: bought in the first quarter, never in the last third
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    last = {}
    first = {}
    for e in purchases.values():
        day = _datetime(e["at"]).astimezone(tz).date()
        last[e["member"]] = max(last.get(e["member"], day), day)
        first[e["member"]] = min(first.get(e["member"], day), day)
    early = [m for m, d in first.items() if d < dt.date(2026, 4, 1)]
    gone = [m for m in early if last[m] < dt.date(2026, 9, 1)]
    assert LAPSE_SHARE * 0.4 < len(gone) / len(early) < LAPSE_SHARE * 1.6
    # seasonality: weekdays busier than Sundays, December busier than February, Golden Week busier than late September
    per_day = Counter(_datetime(e["at"]).astimezone(tz).date() for e in purchases.values())
    weekday = [n for d, n in per_day.items() if d.weekday() < 5]
    sunday = [n for d, n in per_day.items() if d.weekday() == 6]
    assert sum(weekday) / len(weekday) > 1.2 * sum(sunday) / len(sunday)
    by_month = Counter(d.month for d in per_day.elements())
    assert by_month[12] / 31 > 1.2 * by_month[2] / 28
    golden = sum(per_day[dt.date(2026, 10, d)] for d in range(1, 8))
    before = sum(per_day[dt.date(2026, 9, d)] for d in range(21, 28))
    assert golden > 1.15 * before
    channels = Counter(e["channel"] for e in purchases.values())
    assert set(channels) == {"store", "app", "online"}
    assert any(e["type"] == "redeem" for e in events)


def test_generate_uses_the_program_categories(tmp_path, busy):
    members, events = _history(tmp_path, busy, members=30, months=1)
    categories = Counter(
        i["category"] for line in events.open(encoding="utf-8") for i in json.loads(line).get("items", ())
    )
    assert {"coffee", "merch", "food"} <= set(categories)
    assert any(json.loads(line)["type"] == "redeem_coupon" for line in events.open(encoding="utf-8"))


# ------------------------------------------------------------------ the simulator agrees with the engine


def engine_replay(program, members_path, events_path, last_day):
    """The same history through the real Engine on SQLite, with the daily run after each day."""
    engine = Engine(program, SQLiteStore(":memory:"))
    tz = zoneinfo.ZoneInfo(program.timezone)
    rows = [data for _, data, _ in read_history(events_path)]
    day = _datetime(rows[0]["at"]).astimezone(tz).date()
    at = dt.datetime.combine(day, dt.time(0), tz)
    for _, row, _ in read_rows(members_path):
        import_row(engine, row, at)
    for data in rows:
        d = _datetime(data["at"]).astimezone(tz).date()
        while day < d:
            engine.run_triggers(day)
            day += dt.timedelta(days=1)
        with contextlib.suppress(LoyaltyError):
            dispatch(engine, data)
    while day <= last_day:
        engine.run_triggers(day)
        day += dt.timedelta(days=1)
    return engine


def _example(path: Path):
    """An example program, named by its path in the repository as the docs name it.

    Programs are cached by their text: loading the file by its absolute path first would make
    the docs' ``load_program("dsl/examples/...")`` get locations with this checkout's path.
    """
    return load_program(path.relative_to(ROOT).as_posix(), text=path.read_text(encoding="utf-8"))


def _program(which, busy):
    if which == "bubble":
        pytest.importorskip("loyalty_cashback")
        pytest.importorskip("loyalty_churn_logit")
        return _example(BUBBLE)
    if which == "supermarket_zh":  # Chinese names, categories, tiers and messages
        return _example(ROOT / "dsl" / "examples" / "supermarket_zh.loy")
    return _example(COFFEE) if which == "coffee" else busy


@pytest.mark.parametrize("which", ["coffee", "busy", "bubble", "supermarket_zh"])
def test_simulation_agrees_with_the_engine(tmp_path, which, busy):
    program = _program(which, busy)
    members, events = _history(tmp_path, program, members=100 if which == "coffee" else 80, months=4)
    figures = simulate(program, events, members)
    last = dt.date.fromisoformat(figures["period"]["to"])
    engine = engine_replay(program, members, events, last)
    summary = engine.store.summary()
    expected = {b: {k: str(v) for k, v in kinds.items() if v} for b, kinds in summary["ledger"].items()}
    got = {b: {k: v for k, v in kinds.items() if Decimal(v)} for b, kinds in figures["balances"].items()}
    assert got == expected
    assert Decimal(figures["points"]["expired"]) > 0 or which != "busy"
    outcomes = figures["member_outcomes"]
    assert len(outcomes) == summary["members"]
    for member_id, (balance, _earned, tier) in outcomes.items():
        record = engine.store.load_member(member_id)
        assert (balance, tier) == (record.balances.get("points", Decimal(0)), record.member.tier), member_id
    coupons = {
        t: {"issued": sum(s.values()), "redeemed": s.get("redeemed", 0), "void": s.get("void", 0)}
        for t, s in summary["coupons"].items()
    }
    assert figures["coupons"] == coupons
    assert figures["triggers"] == summary["triggers"]
    assert {t: n for t, n in figures["tiers"]["final"].items() if n} == summary["tiers"]
    if which == "bubble":  # the cashback wallets: what was granted less what refunds took back
        wallets = Counter()
        for member_id in outcomes:
            for (reward, unit), amount in engine.store.reward_totals(member_id).items():
                wallets[f"{reward} ({unit})" if unit else reward] += amount
        got = {k: Decimal(r["granted"]) - Decimal(r["reversed"]) for k, r in figures["rewards"].items()}
        assert got and got == dict(wallets) and all(v > 0 for v in got.values())
    for change in ("upgrades", "downgrades"):  # per month, adding up to the whole period
        assert sum(m[change] for m in figures["monthly"]) == figures["tiers"][change]
    if which == "busy":
        assert figures["tiers"]["downgrades"] > 0 and figures["triggers"]["Win back"] > 0
        assert any(c["redeemed"] for c in figures["coupons"].values())


def test_bad_lines_are_reported_with_their_number_and_skipped(tmp_path, busy):
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                '{"id": "t-1", "type": "purchase", "member": "m-1", "at": "2026-05-02T10:00:00+08:00", "amount": "50"}',
                "{not json",
                '{"id": "t-2", "type": "purchase", "member": "m-1", "at": "2026-05-02T11:00:00+08:00", '
                '"items": [{"sku": "A", "unit_price": "abc"}]}',
                '{"id": "x-1", "type": "redeem", "member": "m-1", "points": 9999, "at": "2026-05-03T10:00:00+08:00"}',
                '{"id": "t-3", "type": "purchase", "member": "王芳", "at": "2026-05-04T10:00:00+08:00", "amount": "20"}',
            ]
        ),
        encoding="utf-8",
    )
    figures = simulate(busy, events)
    lines = {e["line"]: e["error"] for e in figures["events"]["error_lines"]}
    assert set(lines) == {2, 3, 4}
    assert "not valid JSON" in lines[2] and "unit_price" in lines[3] and "available" in lines[4]
    assert figures["events"]["refused"] == {"insufficient_balance": 1}
    assert figures["points"]["issued"] == "70"
    assert "王芳" in figures["member_outcomes"]


def test_memory_store_forgets_purchases_once_refunded(tmp_path, busy):
    members, events = _history(tmp_path, busy, members=40, months=2)
    from loyalty_engine.simulate.replay import count_references

    keep = count_references(events)
    assert keep
    replay = Replay(busy, dict(keep))
    for number, data, _ in read_history(events):
        replay.feed(number, data)
    replay.finish()
    assert replay.store.keep == {}  # every refunded purchase was let go
    assert len(replay.store.events) == 0 and not replay.store.entries


# ------------------------------------------------------------------ the commands


def _cli(args):
    from click.testing import CliRunner

    from loyalty_engine import cli

    return CliRunner().invoke(cli.main, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample(tmp_path_factory, busy):
    folder = tmp_path_factory.mktemp("sample")
    program = folder / "busy.loy"
    program.write_text(BUSY, encoding="utf-8")
    generous = folder / "generous.loy"
    generous.write_text(BUSY.replace("award 1 point per 1 CNY of net_amount", "award 2 points per 1 CNY of net_amount"))
    result = _cli(
        ["generate-history", "--members", 60, "--months", 3, "--seed", 2, "--program", program, "--out", folder]
    )
    assert result.exit_code == 0, result.output
    assert "60 members" in result.output and "purchase" in result.output
    return folder


def test_simulate_command_json(sample):
    result = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--members",
                   sample / "members.jsonl", "--json", "--point-value", "0.02"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    points = data["points"]
    assert Decimal(points["liability"]) == (Decimal(points["outstanding"]) * Decimal("0.02")).quantize(Decimal("0.01"))
    assert data["members"]["count"] == 60 and "member_outcomes" not in data
    assert [m["month"] for m in data["monthly"]] == ["2026-01", "2026-02", "2026-03"]


def test_simulate_command_against_shows_the_differences(sample):
    result = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--against",
                   sample / "generous.loy", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    issued = next(r for r in data["comparison"]["figures"] if r["figure"] == "points issued")
    assert Decimal(issued["difference"]) > 0 and Decimal(issued["b"]) > Decimal(issued["a"])
    base = next(r for r in data["comparison"]["rules"] if r["rule"] == "Base earn")
    assert Decimal(base["points_b"]) > Decimal(base["points_a"]) and base["hits_a"] == base["hits_b"]
    assert data["comparison"]["members_changed"] > 0 and data["comparison"]["members"]
    table = _cli(
        ["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--against", sample / "generous.loy"]
    )
    assert table.exit_code == 0 and "B - A" in table.output and "members whose outcome changed most" in table.output


def test_simulate_html_is_self_contained_with_charts(sample, tmp_path):
    report = tmp_path / "report.html"
    result = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--against",
                   sample / "generous.loy", "--html", report])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = report.read_text(encoding="utf-8")
    import re

    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert "Plotly.newPlot" in text and text.count("Plotly.newPlot") >= 4
    for chart in ("chart-points-per-month", "chart-liability", "chart-tier-changes", "chart-rules"):
        assert f'id="{chart}"' in text
    assert "Members per tier over time" in text and '<meta charset="utf-8">' in text


def test_simulate_reads_csv_and_reports_bad_lines(tmp_path, busy):
    program = tmp_path / "busy.loy"
    program.write_text(BUSY, encoding="utf-8")
    events = tmp_path / "events.csv"
    events.write_text(
        "id,type,member,at,channel,store,sku,category,quantity,unit_price,original,points\n"
        "t-1,purchase,王芳,2026-05-02T10:00:00+08:00,store,S1,LATTE,coffee,2,30.00,,\n"
        "t-1,purchase,王芳,2026-05-02T10:00:00+08:00,store,S1,CROISSANT,food,1,18.00,,\n"
        "t-2,purchase,m-2,2026-05-02T11:00:00,store,S1,LATTE,coffee,1,30.00,,\n"
        "r-1,refund,王芳,2026-05-03T10:00:00+08:00,,,LATTE,,1,,t-1,\n"
        "x-1,redeem,王芳,2026-05-04T10:00:00+08:00,,,,,,,,10\n",
        encoding="utf-8",
    )
    result = _cli(["simulate", program, "--events", events, "--json"])
    assert result.exit_code == 2, result.output  # a bad line: reported, skipped, exit 2
    assert "events.csv:4:" in result.output and "at" in result.output
    data = json.loads(result.stdout)
    # 2 x 30 coffee + 18 food: base 78 + coffee 60 = 138; the refund takes back one latte (30 + 30)
    assert data["points"]["issued"] == "138" and data["points"]["reversed"] == "60"
    assert data["points"]["redeemed"] == "10" and data["balances"]["stamps"]["earn"] == "1"
    assert data["top_members"][0]["member"] == "王芳"


def test_simulate_command_refuses_bad_options(sample):
    bad = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--point-value", "abc"])
    assert bad.exit_code == 2 and "--point-value" in bad.output
    dates = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--from", "2026-03-01",
                  "--to", "2026-02-01"])  # fmt: skip
    assert dates.exit_code == 2 and "before --from" in dates.output


def test_simulate_from_to_limits_the_period(sample):
    result = _cli(["simulate", sample / "busy.loy", "--events", sample / "events.jsonl", "--from", "2026-02-01",
                   "--to", "2026-02-28", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["period"] == {"from": "2026-02-01", "to": "2026-02-28", "days": 28}
    assert [m["month"] for m in data["monthly"]] == ["2026-02"] and data["events"]["outside_period"] > 0


@pytest.mark.parametrize("which", ["coffee", "busy"])
def test_daily_run_skips_only_members_who_cannot_fire(tmp_path, which, busy):
    """The trigger guard (wake-up days) changes nothing: the same firings as evaluating every member every day."""
    program = _example(COFFEE) if which == "coffee" else busy
    members, events = _history(tmp_path, program, members=80, months=4, seed=5)
    runs = []
    for guarded in (True, False):
        replay = Replay(program)
        if not guarded:
            replay.store.wake = None
        tz = replay.tz
        replay.add_members(members, dt.datetime(2026, 1, 1, tzinfo=tz))
        for number, data, _ in read_history(events):
            replay.feed(number, data)
        figures = replay.finish()
        runs.append((replay.store.firings_, figures["balances"], figures["coupons"]))
    assert runs[0] == runs[1]  # every firing of every member at the same moment
    assert sum(figures["triggers"].values()) > 0


def test_members_file_takes_the_import_format_with_opening_balances(tmp_path, busy):
    members = tmp_path / "members.csv"
    members.write_text(
        "id,name,joined,tier,balances.points\nm-9,李娜,2025-06-01,silver,500\nm-10,Bad Tier,2025-06-01,platinum,0\n",
        encoding="utf-8",
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"id": "x-1", "type": "redeem", "member": "m-9", "points": 300, "at": "2026-05-04T10:00:00+08:00"}\n'
        '{"id": "t-1", "type": "purchase", "member": "m-9", "at": "2026-05-04T11:00:00+08:00", "amount": "10"}\n',
        encoding="utf-8",
    )
    figures = simulate(busy, events, members)
    assert figures["points"]["opening"] == "500" and figures["points"]["redeemed"] == "300"
    assert figures["points"]["issued"] == "15"  # silver earns x1.5
    assert figures["members"] == {"count": 1, "loaded": 1}
    assert [(e["file"], e["line"]) for e in figures["events"]["error_lines"]] == [("members", 3)]
    assert "platinum" in figures["events"]["error_lines"][0]["error"]
    assert figures["member_outcomes"]["m-9"][0] == Decimal(215)
