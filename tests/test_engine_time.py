"""Time-driven work: expiry, tier review, retention triggers, time zones, and outbox delivery."""

import datetime as dt
import random
import threading
import zoneinfo
from decimal import Decimal

import pytest

from loyalty_engine.errors import InputError, RefusedError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
HEADER = 'program "T" {{ currency CNY timezone "{tz}" rounding floor {extra} }}\n'
BASE = 'rule "base" on purchase { award 1 point per 1 CNY of net_amount }\n'
SEED = 20260505


def make_engine(rules: str = BASE, header: str = "", tz: str = "Asia/Shanghai", path=":memory:") -> Engine:
    return Engine.open(load_program("t.loy", text=HEADER.format(tz=tz, extra=header) + rules), path)


def at(day: int, month: int = 5, year: int = 2026, hour: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=SHANGHAI)


def purchase(event_id, amount="100", when=None, member="m1"):
    return {
        "id": event_id,
        "type": "purchase",
        "member": member,
        "at": (when or at(1)).isoformat(),
        "items": [{"sku": "A", "category": "food", "quantity": 1, "unit_price": str(amount)}],
    }


def days(start: dt.date, end: dt.date):
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def points(engine, member="m1", when=None):
    return engine.member(member, at=when or at(1, year=2030)).balances["points"]


def check_balances(engine) -> None:
    store = engine.store
    for (member_id, name), total in store.ledger_sums().items():
        assert store.load_member(member_id).balances.get(name, Decimal(0)) == total
        lots = store.open_lots(member_id, name)
        assert all(lot.remaining >= 0 for lot in lots)
        if total >= 0:
            assert sum((lot.remaining for lot in lots), Decimal(0)) == total


# ------------------------------------------------------------------ expiry


def test_expiry_after_earning_is_fifo_per_lot():
    engine = make_engine(header="points expire 12 months after earning")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "50", at(1, 6)))
    engine.redeem_points("m1", 30, reference="red-1", at=at(2, 6))  # from the May lot, which expires first
    assert engine.run_triggers(dt.date(2027, 4, 30)).expired == {}
    report = engine.run_triggers(dt.date(2027, 5, 1))
    assert report.expired == {"points": Decimal(70)} and report.expired_members == 1
    assert points(engine, when=at(2, 5, 2027)).total == 50
    assert engine.run_triggers(dt.date(2027, 5, 1)).expired == {}  # again: nothing more
    assert engine.run_triggers(dt.date(2027, 6, 1)).expired == {"points": Decimal(50)}
    view = points(engine, when=at(2, 6, 2027))
    assert view.total == 0 and view.lots == ()
    expire = [e for e in engine.store.ledger("m1") if e.kind == "expire"]
    assert sorted(e.amount for e in expire) == [Decimal(-70), Decimal(-50)]
    check_balances(engine)


def test_expired_points_cannot_be_spent_before_the_expiry_run():
    engine = make_engine(header="points expire 30 days after earning")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "40", at(10, 5)))
    view = points(engine, when=at(31, 5))  # the first lot expired today; no run has swept it yet
    assert view.total == 140 and view.available == 40
    with pytest.raises(RefusedError) as info:
        engine.redeem_points("m1", 41, reference="red-1", at=at(31, 5))
    assert info.value.code == "insufficient_balance"
    assert engine.redeem_points("m1", 40, reference="red-2", at=at(31, 5)).points == -40
    assert engine.run_triggers(dt.date(2026, 5, 31)).expired == {"points": Decimal(100)}
    check_balances(engine)


def test_expiry_catches_up_when_days_were_skipped():
    engine = make_engine(header="points expire 30 days after earning")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "40", at(10, 5)))
    report = engine.run_triggers(dt.date(2026, 7, 1))
    assert report.expired == {"points": Decimal(140)}
    check_balances(engine)


def test_expiry_at_year_end():
    engine = make_engine(header="points expire at end of year")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "20", at(31, 12, hour=23)))  # 23:00 local on 31 December: this year's points
    engine.process(purchase("t3", "7", at(1, 1, 2027, hour=0)))  # 00:00 local on 1 January: next year's
    lots = points(engine, when=at(1, 1, 2027, hour=12)).lots
    assert [x[2] for x in lots] == [dt.date(2027, 1, 1)] * 2 + [dt.date(2028, 1, 1)]
    assert engine.run_triggers(dt.date(2026, 12, 31)).expired == {}
    assert engine.run_triggers(dt.date(2027, 1, 1)).expired == {"points": Decimal(120)}
    assert points(engine, when=at(2, 1, 2027)).total == 7


def test_expiry_after_last_activity_moves_with_activity():
    engine = make_engine(header="points expire 24 months after last activity")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "10", at(1, 3, 2027)))  # activity: the clock restarts
    assert engine.run_triggers(dt.date(2028, 5, 1)).expired == {}
    assert points(engine, when=at(2, 5, 2028)).lots[0][2] == dt.date(2029, 3, 1)
    engine.redeem_points("m1", 10, reference="red-1", at=at(1, 6, 2028))  # spending is activity too
    assert engine.run_triggers(dt.date(2030, 5, 31)).expired == {}
    report = engine.run_triggers(dt.date(2030, 6, 1))
    assert report.expired == {"points": Decimal(100)}
    assert points(engine, when=at(2, 6, 2030)).total == 0
    check_balances(engine)


def test_expiry_of_one_balance_leaves_the_others():
    rules = BASE + 'rule "stamp" on purchase { award 1 stamp }\n'
    engine = make_engine(rules, header="balance stamps  stamps expire 6 months after earning")
    engine.process(purchase("t1", "100", at(1, 5)))
    report = engine.run_triggers(dt.date(2026, 11, 1))
    assert report.expired == {"stamps": Decimal(1)}
    assert points(engine).total == 100


def test_expired_points_after_a_refund_debt():
    engine = make_engine(header="points expire 12 months after earning")
    engine.process(purchase("t1", "100", at(1, 5)))
    engine.process(purchase("t2", "50", at(2, 5)))
    engine.redeem_points("m1", 120, reference="red-1", at=at(3, 5))
    engine.process({"id": "r2", "type": "refund", "member": "m1", "original": "t2", "at": at(4, 5).isoformat()})
    view = points(engine, when=at(5, 5))
    assert view.total == 0 and view.debt == 20
    assert engine.run_triggers(dt.date(2027, 5, 2)).expired == {}
    check_balances(engine)


# ------------------------------------------------------------------ tiers

TIERS = """
tiers by spend over last 12 months {
  member from 0
  silver from 1000 earn x2
  gold from 5000
  review every 12 months grace 3 months
}
"""


def test_tier_upgrade_happens_at_once():
    engine = make_engine(BASE + TIERS)
    first = engine.process(purchase("t1", "800", at(1, 1)))
    assert first.tier is None and engine.store.load_member("m1").member.tier == "member"
    second = engine.process(purchase("t2", "300", at(1, 2)))
    assert second.tier == "silver"
    assert second.points == 300  # this purchase still earns at the old tier
    assert engine.process(purchase("t3", "100", at(2, 2))).points == 200  # x2 from now on
    jump = engine.process(purchase("t4", "5000", at(3, 2)))
    assert jump.tier == "gold"
    history = engine.store.tier_history("m1")
    assert [(h["from_tier"], h["to_tier"]) for h in history] == [("member", "silver"), ("silver", "gold")]
    view = engine.member("m1", at=at(4, 2))
    assert view.tier.since == dt.date(2026, 2, 3) and view.tier.review == dt.date(2027, 2, 3)


def test_tier_downgrade_at_review_after_grace():
    rules = BASE + TIERS + 'rule "lapse" on purchase when days_until(member.tier_expires) <= 100 { award 1 point }\n'
    engine = make_engine(rules)
    engine.process(purchase("t1", "1200", at(1, 2)))
    record = engine.store.load_member("m1")
    assert record.member.tier == "silver" and record.tier_review == dt.date(2027, 2, 1)
    engine.process(purchase("t2", "100", at(10, 2)))
    # a review before the date changes nothing
    report = engine.run_triggers(dt.date(2027, 1, 31))
    assert (report.upgrades, report.downgrades, report.grace_started) == (0, 0, 0)
    # at the review, spend over the last 12 months is 100: grace until 1 May
    report = engine.run_triggers(dt.date(2027, 2, 1))
    assert report.grace_started == 1 and report.downgrades == 0
    record = engine.store.load_member("m1")
    assert record.member.tier == "silver" and record.grace_until == dt.date(2027, 5, 1)
    assert engine.member("m1", at=at(2, 2, 2027)).tier.grace_until == dt.date(2027, 5, 1)
    # tier_expires is the end of the grace: 88 days away on 2 February
    assert engine.preview(purchase("p", "10", at(2, 2, 2027))).points == 2 * 10 + 1
    assert engine.run_triggers(dt.date(2027, 2, 2)).grace_started == 0  # no second grace
    assert engine.run_triggers(dt.date(2027, 4, 30)).downgrades == 0
    report = engine.run_triggers(dt.date(2027, 5, 1))
    assert report.downgrades == 1
    record = engine.store.load_member("m1")
    assert record.member.tier == "member" and record.grace_until is None
    assert record.tier_since == dt.date(2027, 5, 1)
    assert engine.run_triggers(dt.date(2027, 5, 2)).downgrades == 0


def test_tier_kept_at_review_when_still_qualified():
    engine = make_engine(BASE + TIERS)
    engine.process(purchase("t1", "1200", at(1, 2)))
    engine.process(purchase("t2", "1000", at(1, 1, 2027)))
    report = engine.run_triggers(dt.date(2027, 2, 1))
    assert (report.downgrades, report.grace_started) == (0, 0)
    record = engine.store.load_member("m1")
    assert record.member.tier == "silver" and record.tier_review == dt.date(2028, 2, 1)


def test_requalifying_during_grace_keeps_the_tier():
    engine = make_engine(BASE + TIERS)
    engine.process(purchase("t1", "1200", at(1, 2)))
    engine.run_triggers(dt.date(2027, 2, 1))
    engine.process(purchase("t2", "1500", at(1, 3, 2027)))
    report = engine.run_triggers(dt.date(2027, 5, 1))
    assert report.downgrades == 0
    record = engine.store.load_member("m1")
    assert record.member.tier == "silver" and record.grace_until is None
    assert record.tier_review > dt.date(2027, 5, 1)


def test_refund_lowers_the_tier_statistic_but_not_the_tier_until_review():
    engine = make_engine(BASE + TIERS.replace(" grace 3 months", ""))
    engine.process(purchase("t1", "1200", at(1, 2)))
    engine.process({"id": "r1", "type": "refund", "member": "m1", "original": "t1", "at": at(2, 2).isoformat()})
    view = engine.member("m1", at=at(3, 2))
    assert view.member.tier == "silver" and view.tier.value == 0
    report = engine.run_triggers(dt.date(2027, 2, 1))
    assert report.downgrades == 1
    assert engine.store.load_member("m1").member.tier == "member"


# ------------------------------------------------------------------ triggers

TRIGGERS = """
trigger "winback" daily when days_since(member.last_purchase) >= 30 {
  send email "We miss you, {member.name}" with subject "Come back"
  issue coupon BACK
  limit once per 90 days
}
trigger "daily nudge" daily when member.points >= 100 { send sms "You have {member.points} points" }
coupon BACK { discount 10; valid 14 days }
"""


def test_triggers_fire_once_per_day_even_when_run_twice():
    engine = make_engine(BASE + TRIGGERS)
    engine.process(purchase("t1", "100", at(1, 5)))
    first = engine.run_triggers(dt.date(2026, 5, 2))
    assert first.fired == {"daily nudge": 1} and first.messages == 1
    again = engine.run_triggers(dt.date(2026, 5, 2))
    assert again.already_done and again.fired == {}
    also = engine.run_triggers(dt.datetime(2026, 5, 2, 18, tzinfo=SHANGHAI))  # same local day, other time
    assert also.already_done
    assert len(engine.store.messages()) == 1


@pytest.mark.parametrize("as_of", [dt.datetime(2026, 5, 2, 9), "2026-05-02", 20260502, None])
def test_a_trigger_run_for_something_that_is_not_a_day_is_an_input_error(as_of):
    engine = make_engine(BASE + TRIGGERS)
    engine.process(purchase("t1", "100", at(1, 5)))
    before = list(engine.store.conn.iterdump())
    with pytest.raises(InputError) as info:
        engine.run_triggers(as_of)
    assert info.value.problems[0][0] == "as_of"
    assert list(engine.store.conn.iterdump()) == before


def test_overlapping_ranges_never_fire_twice():
    engine = make_engine(BASE + TRIGGERS)
    engine.process(purchase("t1", "100", at(1, 5)))
    for day in days(dt.date(2026, 5, 2), dt.date(2026, 5, 10)):
        engine.run_triggers(day)
    for day in days(dt.date(2026, 5, 5), dt.date(2026, 6, 5)):
        engine.run_triggers(day)
    summary = engine.store.summary()
    assert summary["triggers"]["daily nudge"] == 35  # 2 May .. 5 June, once each
    assert summary["triggers"]["winback"] == 1  # 31 May, then not within 90 days
    assert len(engine.store.messages()) == 36
    coupons = engine.store.coupons("m1")
    assert len(coupons) == 1 and coupons[0].valid_until == dt.date(2026, 6, 13)


def test_trigger_limits_hold_across_days():
    engine = make_engine(BASE + TRIGGERS)
    engine.process(purchase("t1", "50", at(1, 1)))
    fired = []
    for day in days(dt.date(2026, 1, 2), dt.date(2026, 12, 31)):
        if engine.run_triggers(day).fired.get("winback"):
            fired.append(day)
    # 30 days after the last purchase, then every 90 days while it still holds
    assert fired[0] == dt.date(2026, 1, 31)
    assert all((b - a).days == 90 for a, b in zip(fired, fired[1:]))
    assert len(fired) == 4


def test_trigger_sees_a_purchase_made_between_runs():
    engine = make_engine(BASE + TRIGGERS)
    engine.process(purchase("t1", "50", at(1, 1)))
    engine.process(purchase("t2", "20", at(30, 1)))
    assert engine.run_triggers(dt.date(2026, 1, 31)).fired == {}
    assert engine.run_triggers(dt.date(2026, 3, 1)).fired == {"winback": 1}


BIRTHDAY = """
trigger "birthday" daily when is_birthday(member.birthday) {
  send sms "Happy birthday {member.name}"
  award 29 points
  limit once per year
}
"""


def test_feb_29_birthday_fires_once_a_year():
    engine = make_engine(BASE + BIRTHDAY)
    engine.upsert_member({"id": "m1", "name": "Leap", "birthday": "2000-02-29"}, at=at(1, 1))
    engine.upsert_member({"id": "m2", "name": "Mar", "birthday": "2000-03-01"}, at=at(1, 1))
    fired = {"m1": [], "m2": []}
    for year in (2026, 2027, 2028):
        for day in days(dt.date(year, 2, 26), dt.date(year, 3, 2)):
            engine.run_triggers(day)
            engine.run_triggers(day)
    for member_id in fired:
        times = engine.store.firings(member_id, ["trigger:birthday"]).get("trigger:birthday", [])
        fired[member_id] = sorted(t.astimezone(SHANGHAI).date() for t in times)
    assert fired["m1"] == [dt.date(2026, 2, 28), dt.date(2027, 2, 28), dt.date(2028, 2, 29)]
    assert fired["m2"] == [dt.date(2026, 3, 1), dt.date(2027, 3, 1), dt.date(2028, 3, 1)]
    assert points(engine).total == 3 * 29


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("America/Santiago", dt.date(2026, 9, 6)),  # 00:00 does not exist: clocks go from 24:00 to 01:00
        ("America/Santiago", dt.date(2026, 4, 5)),  # 23:00-24:00 on 4 April happens twice
        ("Asia/Tehran", dt.date(2020, 3, 21)),  # historical DST starting at midnight
        ("Asia/Tehran", dt.date(2020, 9, 21)),  # and ending at midnight
        ("Europe/London", dt.date(2026, 3, 29)),
        ("Europe/London", dt.date(2026, 10, 25)),
        ("Pacific/Kiritimati", dt.date(2026, 1, 1)),
    ],
)
def test_dst_days_run_once_and_fire_on_the_local_day(tz, day):
    zone = zoneinfo.ZoneInfo(tz)
    engine = make_engine(BASE + BIRTHDAY + 'rule "daily" on purchase { award 5 points; limit once per day }\n', tz=tz)
    engine.upsert_member(
        {"id": "m1", "name": "Tz", "birthday": day.replace(year=1990).isoformat()},
        at=dt.datetime(2019, 1, 1, tzinfo=zone),
    )
    before = day - dt.timedelta(days=1)
    for d in (before, day, day, day + dt.timedelta(days=1)):
        engine.run_triggers(d)
    times = engine.store.firings("m1", ["trigger:birthday"])["trigger:birthday"]
    assert [t.astimezone(zone).date() for t in times] == [day]
    # the same local day given as an aware time late in the day is already done
    late = dt.datetime.combine(day, dt.time(22, 30), zone)
    assert engine.run_triggers(late).already_done
    # purchases either side of local midnight fall on their own local days for "once per day"
    last_minute = dt.datetime.combine(before, dt.time(23, 59), zone)
    first_minute = dt.datetime.combine(day, dt.time(0, 0), zone) + dt.timedelta(minutes=1)
    first_minute = first_minute.astimezone(dt.UTC).astimezone(zone)  # a real time, even if 00:01 does not exist
    a = engine.process(purchase("p1", "10", last_minute))
    b = engine.process(purchase("p2", "10", first_minute))
    c = engine.process(purchase("p3", "10", dt.datetime.combine(day, dt.time(12), zone)))
    assert (a.points, b.points, c.points) == (15, 15, 10)


def test_expiry_on_a_day_whose_midnight_does_not_exist():
    tz = "America/Santiago"
    zone = zoneinfo.ZoneInfo(tz)
    engine = make_engine(header="points expire 30 days after earning", tz=tz)
    engine.process(purchase("t1", "100", dt.datetime(2026, 8, 7, 12, tzinfo=zone)))
    assert points(engine, when=dt.datetime(2026, 8, 8, 12, tzinfo=zone)).lots[0][2] == dt.date(2026, 9, 6)
    assert engine.run_triggers(dt.date(2026, 9, 5)).expired == {}
    report = engine.run_triggers(dt.date(2026, 9, 6))
    assert report.expired == {"points": Decimal(100)}
    (entry,) = [e for e in engine.store.ledger("m1") if e.kind == "expire"]
    assert entry.day == dt.date(2026, 9, 6)
    assert entry.at.astimezone(zone).date() == dt.date(2026, 9, 6)


# ------------------------------------------------------------------ outbox


class Recorder:
    def __init__(self, fail: int = 0, error: type[Exception] = ConnectionError):
        self.sent: list[str] = []
        self.calls = 0
        self.fail = fail
        self.error = error

    def send(self, message) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error(f"down ({self.calls})")
        self.sent.append(message.dedupe_key)


MESSAGES = """
rule "thanks" on purchase {
  send email "Thanks {member.name}" with subject "Receipt"
  send sms "Thanks"
}
"""


def with_messages(n: int = 1, path=":memory:") -> Engine:
    engine = make_engine(BASE + MESSAGES, path=path)
    for i in range(n):
        engine.process(purchase(f"t{i}", "10", at(1, 5)))
    return engine


NOW = dt.datetime(2026, 5, 2, tzinfo=dt.UTC)


def test_deliver_sends_each_message_once():
    engine = with_messages(3)
    email, sms = Recorder(), Recorder()
    report = engine.deliver({"email": email, "sms": sms}, now=NOW)
    assert report.sent == 6 and report.retried == report.dead == 0
    assert sorted(email.sent) == ["t0:1", "t1:1", "t2:1"]
    assert sorted(sms.sent) == ["t0:2", "t1:2", "t2:2"]
    again = engine.deliver({"email": email, "sms": sms}, now=NOW + dt.timedelta(days=1))
    assert again.sent == 0 and len(email.sent) == 3
    assert engine.store.outbox_counts() == {"sent": 6}


def test_deliver_leaves_messages_for_channels_not_given_and_not_yet_due():
    engine = with_messages(1)
    email = Recorder()
    assert engine.deliver({"email": email}, now=NOW).sent == 1
    assert engine.store.outbox_counts() == {"sent": 1, "pending": 1}
    early = dt.datetime(2026, 4, 30, tzinfo=dt.UTC)  # before the message was created
    assert engine.deliver({"sms": Recorder()}, now=early).sent == 0
    assert engine.deliver({"sms": Recorder()}, now=NOW).sent == 1


def test_a_failing_channel_is_retried_with_backoff_and_does_not_stop_the_others():
    engine = with_messages(2)
    rng = random.Random(SEED)
    print("seed", SEED)
    email, sms = Recorder(fail=10**9), Recorder()
    report = engine.deliver({"email": email, "sms": sms}, now=NOW, rng=rng)
    assert report.sent == 2 and report.retried == 2 and len(report.errors) == 2
    assert len(sms.sent) == 2
    # not due again at once (the first retry waits 15-30 s)
    assert engine.deliver({"email": email}, now=NOW + dt.timedelta(seconds=14), rng=rng).retried == 0
    assert email.calls == 2
    recovered = Recorder()
    report = engine.deliver({"email": recovered}, now=NOW + dt.timedelta(seconds=31), rng=rng)
    assert report.sent == 2 and sorted(recovered.sent) == ["t0:1", "t1:1"]
    assert engine.store.outbox_counts() == {"sent": 4}


def test_backoff_grows_and_is_jittered():
    rng = random.Random(SEED)
    from loyalty_engine.service.outbox import backoff

    delays = [backoff(n, rng=rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        full = min(6 * 3600.0, 30.0 * 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_a_failing_message_is_dead_lettered_after_max_attempts():
    engine = with_messages(1)
    rng = random.Random(SEED)
    email = Recorder(fail=10**9)
    now = NOW
    reports = []
    for _ in range(5):
        reports.append(engine.deliver({"email": email}, now=now, max_attempts=3, rng=rng))
        now += dt.timedelta(hours=1)
    assert [(r.retried, r.dead) for r in reports] == [(1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    assert email.calls == 3
    (dead,) = engine.store.messages("dead")
    assert dead.attempts == 3 and "down (3)" in dead.last_error


def test_an_old_message_is_dead_lettered_at_its_next_failure():
    engine = with_messages(1)
    email = Recorder(fail=1)
    report = engine.deliver({"email": email}, now=NOW + dt.timedelta(days=8), max_age=dt.timedelta(days=7))
    assert report.dead == report.stale == 1 and email.sent == []
    (dead,) = engine.store.messages("dead")
    assert dead.last_error == "not sent: older than 7 days"


def test_a_channel_raising_any_exception_does_not_stop_the_others():
    engine = with_messages(1)

    class Broken:
        def send(self, message):
            raise RuntimeError("plugin bug")

    sms = Recorder()
    report = engine.deliver({"email": Broken(), "sms": sms}, now=NOW)
    assert report.sent == 1 and report.retried == 1 and sms.sent == ["t0:2"]
    assert "RuntimeError: plugin bug" in report.errors[0]


def test_two_dispatchers_never_both_send_one_message(tmp_path):
    path = tmp_path / "outbox.db"
    with_messages(20, path=path).close()
    program = load_program("t.loy", text=HEADER.format(tz="Asia/Shanghai", extra="") + BASE + MESSAGES)
    sent: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    class Shared:
        def send(self, message):
            with lock:
                sent.append(message.dedupe_key)

    def run():
        try:
            engine = Engine.open(program, path)
            for _ in range(3):
                engine.deliver({"email": Shared(), "sms": Shared()}, now=NOW, batch=3)
            engine.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sent) == 40 and len(set(sent)) == 40


def test_a_dispatcher_does_not_take_a_message_another_one_holds(tmp_path):
    path = tmp_path / "outbox.db"
    with_messages(1, path=path).close()
    program = load_program("t.loy", text=HEADER.format(tz="Asia/Shanghai", extra="") + BASE + MESSAGES)
    first, second = Engine.open(program, path), Engine.open(program, path)
    inner = []

    class Reentrant:
        """While the first dispatcher is sending, a second one runs: it must find nothing to send."""

        def __init__(self):
            self.sent = []

        def send(self, message):
            inner.append(second.deliver({"email": Recorder(), "sms": Recorder()}, now=NOW).sent)
            self.sent.append(message.dedupe_key)

    channel = Reentrant()
    report = first.deliver({"email": channel, "sms": channel}, now=NOW)
    assert report.sent == 2 and inner == [0, 0]
    assert first.store.outbox_counts() == {"sent": 2}


# ------------------------------------------------------------------ more retention triggers, chunks and resuming

RETENTION = """
tiers by spend over last 12 months {
  member from 0
  silver from 1000
  review every 12 months grace 3 months
}
trigger "expiring" daily when expiring_within(30) > 0 {
  send email "{expiring_within(30)} points expire soon"
  limit once per 60 days
}
trigger "onboarding" daily when between(days_since(member.joined), 7, 90) and purchases over lifetime < 2 {
  send sms "Come back this week"
  limit once per member
}
trigger "lapse" daily when member.tier == "silver" and days_until(member.tier_expires) <= 30 {
  send email "Keep your silver status"
  limit once per 60 days
}
"""


def fired_days(engine, start, end) -> dict[str, list[dt.date]]:
    out: dict[str, list[dt.date]] = {}
    for day in days(start, end):
        for name in engine.run_triggers(day).fired:
            out.setdefault(name, []).append(day)
    return out


def test_points_expiring_soon_onboarding_and_tier_lapse_triggers():
    engine = make_engine(BASE + RETENTION, header="points expire 12 months after earning")
    engine.process(purchase("t1", "1000", at(1, 5)))  # joins and reaches silver on 1 May 2026
    fired = fired_days(engine, dt.date(2026, 5, 1), dt.date(2026, 5, 10))
    assert fired == {"onboarding": [dt.date(2026, 5, 8)]}
    fired = fired_days(engine, dt.date(2027, 3, 25), dt.date(2027, 5, 5))
    # points earned 1 May 2026 expire 1 May 2027: "within 30 days" from 1 April
    assert fired["expiring"] == [dt.date(2027, 4, 1)]
    # the review is on 1 May 2027; grace then runs to 1 August, so the lapse warning comes twice
    assert fired["lapse"] == [dt.date(2027, 4, 1)]
    assert engine.store.load_member("m1").grace_until == dt.date(2027, 8, 1)
    fired = fired_days(engine, dt.date(2027, 5, 6), dt.date(2027, 8, 1))
    assert fired == {"lapse": [dt.date(2027, 7, 2)]}
    assert engine.store.load_member("m1").member.tier == "member"
    bodies = [m.body for m in engine.store.messages()]
    assert "1,000 points expire soon" in bodies


def test_a_day_is_processed_in_chunks_and_resumes_where_it_stopped(monkeypatch):
    from loyalty_engine.service import schedule

    monkeypatch.setattr(schedule, "CHUNK", 7)
    engine = make_engine(BASE + BIRTHDAY)
    members = [f"m{n:03d}" for n in range(40)]
    for member in members:
        engine.upsert_member({"id": member, "name": member, "birthday": "1990-05-20"}, at=at(1, 1))
    plan = engine.program.code.triggers  # the compiled trigger function the daily run calls per member
    real = plan.function
    calls = {"n": 0}

    def failing(context, as_of):
        calls["n"] += 1
        if calls["n"] == 23:  # in the fourth chunk
            raise RuntimeError("power cut")
        return real(context, as_of)

    monkeypatch.setattr(plan, "function", failing)
    with pytest.raises(RuntimeError):
        engine.run_triggers(dt.date(2026, 5, 20))
    assert engine.store.summary()["triggers"] == {"birthday": 21}  # three whole chunks committed
    monkeypatch.setattr(plan, "function", real)
    report = engine.run_triggers(dt.date(2026, 5, 20))
    assert report.members_checked == 19 and report.fired == {"birthday": 19}
    assert engine.run_triggers(dt.date(2026, 5, 20)).already_done
    for member in members:
        assert len(engine.store.firings(member, ["trigger:birthday"])["trigger:birthday"]) == 1
        assert points(engine, member).total == 29
    assert len({m.dedupe_key for m in engine.store.messages()}) == 40


def test_expiry_and_review_stream_in_chunks(monkeypatch):
    from loyalty_engine.service import schedule

    monkeypatch.setattr(schedule, "CHUNK", 5)
    engine = make_engine(BASE + TIERS, header="points expire 30 days after earning")
    other = make_engine(BASE + TIERS, header="points expire 24 months after last activity")
    for n in range(23):
        for e in (engine, other):
            e.process(purchase(f"t{n}", "1200", at(1, 2), member=f"m{n:02d}"))
    report = engine.run_triggers(dt.date(2026, 3, 3))
    assert report.expired == {"points": Decimal(23 * 1200)} and report.expired_members == 23
    report = other.run_triggers(dt.date(2028, 2, 1))
    assert report.expired == {"points": Decimal(23 * 1200)} and report.expired_members == 23
    report = engine.run_triggers(dt.date(2027, 2, 1))
    assert report.grace_started == 23
    report = engine.run_triggers(dt.date(2027, 5, 1))
    assert report.downgrades == 23
    check_balances(engine)
    check_balances(other)
