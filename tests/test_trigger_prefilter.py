"""The daily run's prefilter: the store rules out only members no due trigger can fire for.

The differential test runs the same history and the same days twice, once with
the prefilter and once evaluating every member, and requires the same firings,
messages, coupons and ledger; the unit tests pin what each condition shape reads.
"""

import datetime as dt
import random
import shutil

import pytest

from loyalty_engine.model import Member
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.prefilter import TriggerFilter
from loyalty_engine.store.filters import AllOf, AnyOf, BirthdayOn, DateRange, ExpiringBy, TierIn

SEED = 20261201

TRIGGERS = """
points expire 30 days after earning
}

tiers by spend over last 12 months {
  member from 0
  silver from 300
  gold from 800
  review every 3 months grace 1 months
}

coupon HELLO "hello" { discount 5  valid 7 days }

rule "base" on purchase { award 1 point per 1 CNY of net_amount }

trigger "birthday" daily when is_birthday(member.birthday) { send sms "happy birthday" }
trigger "lapsed" daily when days_since(member.last_purchase) > 11 and 15 > days_since(member.last_purchase) {
  send sms "we miss you"
}
trigger "last week" daily when days_since(member.last_purchase) == 7 { issue coupon HELLO }
trigger "a month" daily when days_since(member.last_purchase) >= 30 and days_since(member.last_purchase) <= 31 {
  send sms "a month already"
}
trigger "review soon" daily when days_until(member.tier_expires) > 20 and days_until(member.tier_expires) < 23 {
  send sms "review soon"
}
trigger "expiring" weekly on monday when expiring_within(10) > 0 { send email "points expire soon" }
trigger "onboarding" daily when between(days_since(member.joined), 3, 9) { send sms "welcome" }
trigger "gold lapse" monthly on day 31 when member.tier == "gold" and days_until(member.tier_expires) <= 40 {
  send email "keep gold"
}
trigger "first or silver" daily when days_since(member.first_purchase) == 5 or member.tier in ["silver"] {
  send sms "thanks"
  limit once per 20 days
}
"""

OFFSETS = [dt.timedelta(hours=h) for h in (-12, -7, 0, 5.5, 8, 13, 14)]


def program_text(timezone: str) -> str:
    return f'program "P" {{\n  currency CNY\n  timezone "{timezone}"\n' + TRIGGERS


def history(rng: random.Random, start: dt.date, members: int) -> tuple[list[Member], list[dict]]:
    people = []
    for i in range(members):
        birthday = rng.choice([dt.date(1992, 2, 29), dt.date(1990, 3, 1), dt.date(1985, 2, 28)])
        if rng.random() < 0.6:
            birthday = dt.date(1980 + rng.randrange(30), rng.randint(1, 12), rng.randint(1, 28))
        joined = start + dt.timedelta(days=rng.randrange(-30, 30))
        people.append(Member(f"m{i:03d}", f"M {i}", joined=joined, birthday=birthday))
    events = []
    for n in range(members * 4):
        who = rng.choice(people)
        day = who.joined + dt.timedelta(days=rng.randrange(0, 40))
        offset = rng.choice(OFFSETS)
        # times near local midnight in the sender's offset, so the program's timezone decides the day
        moment = dt.datetime.combine(day, dt.time(rng.choice([0, 1, 12, 22, 23]), rng.randrange(60)))
        at = moment.replace(tzinfo=dt.timezone(offset))
        price = f"{rng.choice([20, 45, 120, 400]) + rng.randrange(100) / 100:.2f}"
        events.append(
            {
                "id": f"p{n:04d}",
                "type": "purchase",
                "member": who.id,
                "at": at.isoformat(),
                "items": [{"sku": "X", "category": "coffee", "quantity": 1, "unit_price": price}],
            }
        )
    events.sort(key=lambda e: dt.datetime.fromisoformat(e["at"]))
    return people, events


def snapshot(engine: Engine) -> dict:
    conn = engine.store.conn
    return {
        "outbox": conn.execute("SELECT dedupe_key, member, channel, body FROM outbox ORDER BY dedupe_key").fetchall(),
        "firings": conn.execute("SELECT member, key, at FROM firings ORDER BY member, key, at").fetchall(),
        "coupons": conn.execute("SELECT code, member, template FROM coupons ORDER BY code").fetchall(),
        "ledger": conn.execute("SELECT member, kind, amount, day FROM ledger ORDER BY id").fetchall(),
        "members": conn.execute(
            "SELECT id, tier, balances, tier_review, grace_until FROM members ORDER BY id"
        ).fetchall(),
    }


@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_prefiltered_daily_runs_fire_exactly_what_evaluating_everyone_fires(tmp_path, timezone):
    print(f"seed {SEED}")
    rng = random.Random(f"{SEED}-{timezone}")
    start = dt.date(2027, 1, 20)  # the runs cross 28 February of a year that is not a leap year, and a 31st
    (tmp_path / "p.loy").write_text(program_text(timezone), encoding="utf-8")
    program = load_program(tmp_path / "p.loy")
    people, events = history(rng, start, 80)
    base = Engine.open(program, tmp_path / "base.db", synchronous="NORMAL")
    for person in people:
        base.upsert_member(person, dt.datetime.combine(person.joined, dt.time(9), dt.UTC))
    for event in events:
        base.process(event)
    base.close()
    shutil.copy(tmp_path / "base.db", tmp_path / "all.db")
    shutil.copy(tmp_path / "base.db", tmp_path / "filtered.db")
    everyone = Engine.open(program, tmp_path / "all.db", synchronous="NORMAL")
    everyone.trigger_prefilter = False
    filtered = Engine.open(program, tmp_path / "filtered.db", synchronous="NORMAL")
    skipped = fired = 0
    for n in range(70):
        day = start + dt.timedelta(days=n)
        a, b = everyone.run_triggers(day), filtered.run_triggers(day)
        assert a.fired == b.fired, (day, a.fired, b.fired)
        assert (a.coupons, a.messages, a.expired) == (b.coupons, b.messages, b.expired), day
        assert a.members_skipped == 0 and a.members_checked == b.members_checked + b.members_skipped
        skipped += b.members_skipped
        fired += sum(b.fired.values())
    assert snapshot(everyone) == snapshot(filtered)
    assert fired > 100 and skipped > 0.3 * 70 * 80  # it fired plenty, and the filter did rule members out


def filter_for(conditions: str, day: dt.date, header: str = "") -> object:
    text = (
        'program "P" { currency CNY  timezone "Asia/Shanghai"' + header + " }\n"
        'rule "base" on purchase { award 1 point per 1 CNY of net_amount }\n' + conditions
    )
    return TriggerFilter(load_program("f.loy", text=text)).for_day(day)


MONDAY = dt.date(2025, 9, 1)


def test_readable_conditions_become_store_predicates():
    f = filter_for(
        'trigger "a" daily when 60 <= days_since(member.last_purchase) and score("churn_risk") > 0.5 { send sms "x" }\n'
        'trigger "b" daily when days_until(member.tier_expires) < 10 { send sms "x" }\n'
        'trigger "c" daily when "gold" == member.tier or member.tier in ["silver", "bronze"] { send sms "x" }\n',
        MONDAY,
    )
    assert f.candidates == AnyOf(
        (
            DateRange("last_purchase", None, dt.date(2025, 7, 3)),  # the score is not readable: left out
            DateRange("tier_expires", None, dt.date(2025, 9, 10)),
            AnyOf((TierIn(("gold",)), TierIn(("silver", "bronze")))),
        )
    )


def test_a_due_trigger_with_nothing_readable_means_every_member():
    assert filter_for('trigger "a" daily when visits over last 30 days >= 3 { send sms "x" }\n', MONDAY) is None
    assert filter_for('trigger "a" daily { send sms "x" }\n', MONDAY) is None
    # an "or" with one unreadable side cannot narrow anything either
    unreadable_or = 'trigger "a" daily when is_birthday(member.birthday) or member.name == "x" { send sms "x" }\n'
    assert filter_for(unreadable_or, MONDAY) is None


def test_triggers_not_due_today_rule_out_everyone():
    weekly = 'trigger "a" weekly on friday when member.name == "x" { send sms "x" }\n'
    assert filter_for(weekly, MONDAY).nobody
    assert filter_for(weekly, dt.date(2025, 9, 5)) is None  # a Friday: due, and unreadable
    monthly = 'trigger "m" monthly on day 31 when is_birthday(member.birthday) { send sms "x" }\n'
    assert filter_for(monthly, dt.date(2025, 9, 30)).candidates == AnyOf((BirthdayOn(("09-30",)),))


def test_expiring_within_is_read_only_when_nothing_expiring_fails_it():
    header = "  points expire 12 months after earning"
    over = 'trigger "e" daily when expiring_within(30) > 0 { send sms "x" }\n'
    assert filter_for(over, MONDAY, header).candidates == AnyOf((ExpiringBy("points", dt.date(2025, 10, 1)),))
    under = 'trigger "e" daily when expiring_within(30) < 100 { send sms "x" }\n'  # true with nothing expiring
    assert filter_for(under, MONDAY, header) is None
    activity = "  points expire 12 months after last activity"  # lots store no expiry: nothing to look up
    assert filter_for(over, MONDAY, activity) is None


def test_birthday_on_28_february_includes_29_february_birthdays():
    f = filter_for('trigger "b" daily when is_birthday(member.birthday) { send sms "x" }\n', dt.date(2027, 2, 28))
    assert f.candidates == AnyOf((BirthdayOn(("02-28", "02-29")),))


def test_conjunctions_keep_every_readable_part():
    f = filter_for(
        'trigger "g" daily when member.tier == "gold" and between(days_since(member.joined), 7, 90) '
        'and member.name == "x" { send sms "x" }\n',
        MONDAY,
    )
    joined = DateRange("joined", dt.date(2025, 6, 3), dt.date(2025, 8, 25))
    assert f.candidates == AnyOf((AllOf((TierIn(("gold",)), joined)),))
