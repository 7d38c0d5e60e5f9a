"""A test kit for plugin authors: run a plugin against a real engine on an in-memory store.

Use it from pytest by naming it in a ``conftest.py``::

    pytest_plugins = ["loyalty_engine.testing"]

and ask for the fixtures::

    def test_my_reward(make_engine):
        engine = make_engine('rule "R" on purchase { reward cashback(percent: 2) }', plugins=[my_plugin])
        result = engine.process(purchase("t-1", "m-1", ("LATTE", "coffee", 2, "32.00")))

The engine checks the rules against the built-ins plus the plugins you pass
(installed plugins stay out unless ``installed=True``), so a test sees exactly
the plugin under test. :class:`FakeChannel` records messages and can be told to
fail, :class:`HTTPRecorder` (fixture ``http_recorder``) is a local endpoint for
channels that speak HTTP, and :func:`assert_ledger_consistent` checks the invariant every test of a
stateful plugin should end with: each balance equals the sum of its entries.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .hookspecs import hookimpl
from .language.frontend import CheckResult, check_source
from .language.schema import Channel
from .plugins import Plugins
from .program import load_program
from .service.engine import Engine
from .store.sqlite import SQLiteStore

HEADER = 'program "Plugin test" {\n  currency CNY\n  timezone "Asia/Shanghai"\n}\n'
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=SHANGHAI)


def program_text(rules: str) -> str:
    """``rules`` with a program header (CNY, Asia/Shanghai) unless they start with their own."""
    return rules if rules.lstrip().startswith("program") else HEADER + rules


def check_rules(rules: str, plugins: Iterable[Any] = (), *, installed: bool = False) -> CheckResult:
    """Check rule text against the built-ins and ``plugins``; never raises for rule-file problems."""
    return check_source("rules.loy", program_text(rules), Plugins(plugins, entry_points=installed).schema())


def engine_for(
    rules: str,
    plugins: Iterable[Any] = (),
    *,
    now: dt.datetime = NOW,
    installed: bool = False,
    store: str = ":memory:",
) -> Engine:
    """An engine for ``rules`` with ``plugins`` loaded, on a fresh in-memory store, its clock fixed at ``now``."""
    manager = Plugins(plugins, entry_points=installed)
    program = load_program("rules.loy", text=program_text(rules), schema=manager.schema())
    return Engine(program, SQLiteStore(store), clock=lambda: now, plugins=manager)


def _lines(lines) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if isinstance(line, dict):
            out.append(line)
            continue
        sku, category, quantity, unit_price = line
        out.append({"sku": sku, "category": category, "quantity": quantity, "unit_price": str(unit_price)})
    return out


def purchase(event_id: str, member: str, *lines, at: dt.datetime = NOW, **fields) -> dict[str, Any]:
    """A purchase in the wire format; each line is ``(sku, category, quantity, unit_price)`` or a dict."""
    return {
        "id": event_id,
        "type": "purchase",
        "member": member,
        "at": at.isoformat(),
        "items": _lines(lines),
        **fields,
    }


def refund(event_id: str, original: str, member: str, *lines, at: dt.datetime = NOW) -> dict[str, Any]:
    """A refund of ``original``: lines as ``(sku, quantity)``; none returns everything left."""
    items = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
    return {
        "id": event_id,
        "type": "refund",
        "original": original,
        "member": member,
        "at": at.isoformat(),
        "items": items,
    }


class FakeChannel:
    """A sender that records what it is given; ``fail_next(n)`` makes the next n sends raise (an outage)."""

    def __init__(self):
        self.sent: list[Any] = []
        self.attempts = 0
        self._failures = 0
        self.error: Exception = ConnectionError("fake channel is down")

    def fail_next(self, times: int = 1, error: Exception | None = None) -> None:
        self._failures = times
        if error is not None:
            self.error = error

    def send(self, message) -> None:
        self.attempts += 1
        if self._failures:
            self._failures -= 1
            raise self.error
        self.sent.append(message)

    @property
    def bodies(self) -> list[str]:
        return [m.body for m in self.sent]


def channel_plugin(name: str, sender: Any, *, subject: bool = False, address: str | None = None):
    """A throwaway plugin registering channel ``name`` whose messages go to ``sender``."""

    class _ChannelPlugin:
        @hookimpl
        def register_channels(self, register):
            register(Channel(name, "test channel", subject=subject, address=address, factory=lambda config: sender))

    _ChannelPlugin.__name__ = f"channel_plugin_{name}"
    return _ChannelPlugin()


class HTTPRecorder:
    """A local HTTP server on 127.0.0.1 for channel tests: records each POST, answers ``status``.

    ``delay`` seconds before answering simulate a slow endpoint (to test a
    sender's timeout). ``requests`` holds ``(headers, body bytes)``; ``json()``
    the decoded bodies. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        self.delay = delay
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((dict(self.headers), body))
                if recorder.delay:
                    time.sleep(recorder.delay)
                self.send_response(recorder.status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self) -> list[Any]:
        return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> HTTPRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def assert_ledger_consistent(engine: Engine) -> None:
    """Every member's stored balance equals the sum of their ledger entries, and no lot is below zero."""
    conn = engine.store.conn
    sums: dict[tuple[str, str], Decimal] = {}
    for member, balance, amount in conn.execute("SELECT member, balance, amount FROM ledger"):
        sums[(member, balance)] = sums.get((member, balance), Decimal(0)) + Decimal(amount)
    for (member, balance), total in sums.items():
        record = engine.store.load_member(member)
        stored = record.balances.get(balance, Decimal(0))
        assert stored == total, f"member {member}: {balance} balance {stored} but its entries sum to {total}"
    negative = conn.execute("SELECT id, remaining FROM lots WHERE CAST(remaining AS REAL) < 0").fetchall()
    assert not negative, f"lots below zero: {negative}"


# ------------------------------------------------------------------ pytest fixtures


@pytest.fixture
def make_engine():
    """A factory: ``make_engine(rules, plugins=[...], now=..., installed=False)``; engines close after the test."""
    engines: list[Engine] = []

    def factory(rules: str, plugins: Iterable[Any] = (), **options) -> Engine:
        engine = engine_for(rules, plugins, **options)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.close()


@pytest.fixture
def http_recorder():
    """An :class:`HTTPRecorder` on 127.0.0.1, stopped after the test."""
    with HTTPRecorder() as recorder:
        yield recorder


@pytest.fixture
def fake_channel() -> FakeChannel:
    """A :class:`FakeChannel` to pass to ``engine.deliver({"sms": fake_channel})`` or :func:`channel_plugin`."""
    return FakeChannel()
