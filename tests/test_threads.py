"""Threads sharing one engine (a web server's request threads): operations take turns, nothing mixes.

Before the engine took turns, 4 threads x 200 purchases on one engine failed 598 of them with
"the enclosing transaction was lost", and a thread's statements could run inside another's transaction.
"""

import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path

from loyalty_engine import Engine
from loyalty_engine.errors import RefusedError

COFFEE = Path(__file__).resolve().parent.parent / "dsl" / "examples" / "coffee_chain.loy"
THREADS = 4
MEMBERS = 10


def _purchase(event_id: str, member: str) -> dict:
    return {
        "id": event_id,
        "type": "purchase",
        "member": member,
        "at": "2026-05-04T09:00:00+08:00",
        "items": [{"sku": "LATTE", "category": "coffee", "quantity": 1, "unit_price": "32.00"}],
    }


def test_threads_sharing_an_engine_apply_every_event_once_and_spend_only_what_there_is(tmp_path):
    engine = Engine.open(COFFEE, store=tmp_path / "shared.db", synchronous="NORMAL")
    for m in range(MEMBERS):  # 64 points each (a 32.00 latte earns 1 + 1 per CNY): exactly 6 redemptions of 10
        engine.process(_purchase(f"seed-{m}", f"m-{m}"))
    outcomes: Counter = Counter()
    failures: list[str] = []

    def till(t: int) -> None:
        for i in range(60):
            member = f"m-{i % MEMBERS}"
            try:
                engine.process(_purchase(f"t{t}-{i}", f"x-{t}-{i % 7}"))  # other members: purchases in between
                engine.preview(_purchase("a-look", member))
                engine.redeem_points(member, 10, f"r{t}-{i}")
                outcomes["redeemed"] += 1
            except RefusedError as exc:
                outcomes[exc.code] += 1
            except Exception as exc:  # noqa: BLE001 - anything else is the failure this test is about
                failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=till, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert outcomes == {"redeemed": 6 * MEMBERS, "insufficient_balance": THREADS * 60 - 6 * MEMBERS}
    store = engine.store
    assert store.conn.execute("SELECT count(*) FROM events WHERE kind = 'purchase'").fetchone()[0] == (
        MEMBERS + THREADS * 60
    )
    sums = store.ledger_sums()
    for (member, balance), total in sums.items():
        assert store.load_member(member).balances.get(balance, Decimal(0)) == total, member
    assert all(store.load_member(f"m-{m}").balances["points"] == 4 for m in range(MEMBERS))
    assert store.integrity_check() == "ok"
    engine.close()


def test_processes_forked_after_the_engine_opened_each_get_their_own_connection(tmp_path):
    """A pre-loading web server (gunicorn --preload) or a process pool forks after the engine opened:
    SQLite must not be used through a connection inherited over fork, so the store opens another."""
    import multiprocessing
    import os

    engine = Engine.open(COFFEE, store=tmp_path / "forked.db", synchronous="NORMAL")
    engine.process(_purchase("before-fork", "m-0"))
    inherited = id(engine.store.conn)

    def child(k: int, answers) -> None:
        for i in range(40):
            engine.process(_purchase(f"c{k}-{i}", f"m-{k}"))
        answers.put((k, os.getpid(), id(engine.store.conn) != inherited))

    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    children = [context.Process(target=child, args=(k, answers)) for k in range(3)]
    for process in children:
        process.start()
    for process in children:
        process.join(timeout=60)
    assert [p.exitcode for p in children] == [0, 0, 0]
    got = sorted(answers.get(timeout=5) for _ in children)
    assert [own for _, _, own in got] == [True, True, True]
    engine.process(_purchase("after-fork", "m-0"))  # the parent goes on with its own connection
    assert id(engine.store.conn) == inherited
    assert engine.store.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2 + 3 * 40
    assert engine.store.integrity_check() == "ok"
