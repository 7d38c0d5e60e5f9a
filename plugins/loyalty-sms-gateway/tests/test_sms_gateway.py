"""The SMS gateway channel against a local HTTP server (the kit's http_recorder, on 127.0.0.1)."""

import datetime as dt

import loyalty_sms_gateway
import pytest

from loyalty_engine.testing import NOW

RULES = 'rule "Thanks" on purchase { send sms "谢谢 {member.name}! You earned points." }\n'


@pytest.fixture
def gateway(http_recorder):
    return http_recorder


def queued(make_engine, phone="+8613800000000"):
    engine = make_engine(RULES, [loyalty_sms_gateway])
    engine.upsert_member({"id": "m-1", "name": "王芳", "phone": phone})
    engine.process({"id": "t-1", "type": "purchase", "member": "m-1", "at": NOW.isoformat(), "amount": "50.00"})
    return engine


def config(gateway, **extra):
    return {
        "sms": {"via": "sms_gateway"},
        "sms_gateway": {"url": gateway.url, "api_key": "k-1", "timeout": 0.3, **extra},
    }


def test_message_posted_with_key_token_and_chinese_text(make_engine, gateway):
    engine = queued(make_engine)
    senders, missing = engine.senders(config(gateway, sender_id="BEANS"), only=["sms"])
    assert missing == {}
    report = engine.deliver(senders, now=NOW)
    assert report.sent == 1
    headers, body = gateway.requests[0][0], gateway.json()[0]
    assert body == {"to": "+8613800000000", "text": "谢谢 王芳! You earned points.", "sender_id": "BEANS",
                    "reference": "t-1:1"}  # fmt: skip
    assert headers["Authorization"] == "Bearer k-1" and headers["Idempotency-Key"] == "t-1:1"
    assert engine.deliver(senders, now=NOW).sent == 0  # sent once


def test_gateway_errors_and_timeouts_leave_the_message_for_retry(make_engine, gateway):
    engine = queued(make_engine)
    senders, _ = engine.senders(config(gateway), only=["sms"])
    gateway.status = 500
    report = engine.deliver(senders, now=NOW)
    assert (report.sent, report.retried) == (0, 1) and "500" in report.errors[0]
    gateway.status, gateway.delay = 202, 1.0  # answers after 1 s, the sender gives up after 0.3 s
    report = engine.deliver(senders, now=NOW + dt.timedelta(hours=1))
    assert (report.sent, report.retried) == (0, 1) and "timed out" in report.errors[0]
    gateway.delay = 0
    report = engine.deliver(senders, now=NOW + dt.timedelta(hours=2))
    assert report.sent == 1
    keys = {h["Idempotency-Key"] for h, _ in gateway.requests}
    assert keys == {"t-1:1"}  # every attempt carried the same key, so the gateway can drop repeats


def test_rejected_or_unaddressable_messages_are_dead_lettered_at_once(make_engine, gateway):
    engine = queued(make_engine)
    senders, _ = engine.senders(config(gateway), only=["sms"])
    gateway.status = 400
    assert engine.deliver(senders, now=NOW).dead == 1
    nophone = queued(make_engine, phone=None)
    senders, _ = nophone.senders(config(gateway), only=["sms"])
    report = nophone.deliver(senders, now=NOW)
    assert report.dead == 1 and "no phone number" in report.errors[0]


def test_settings_are_checked(make_engine):
    engine = queued(make_engine)
    senders, missing = engine.senders({"sms": {"via": "sms_gateway"}}, only=["sms"])
    assert senders == {} and missing == {"sms": "[channels.sms_gateway] needs url"}
