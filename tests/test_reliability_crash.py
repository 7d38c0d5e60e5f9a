"""Crashes: ``kill -9`` during ``loyalty run``, a failure at every step inside applying an event, storage errors.

After any of them the database passes ``PRAGMA integrity_check``, nothing of
the failed event is left behind, and running again applies every event
exactly once: the final state equals a clean run's. The kill test is seeded
(``LOYALTY_SEED``); the kill moments themselves depend on timing.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter

import pytest

from loyalty_engine.errors import LoyaltyError, StoreError
from loyalty_engine.program import load_program
from loyalty_engine.service.engine import Engine
from loyalty_engine.service.replay import run_lines
from loyalty_engine.store.sqlite import SQLiteStore
from tests.histories import (
    COFFEE,
    check_invariants,
    diff,
    generate,
    loyalty_run,
    pick_seed,
    short_expiry_program,
    snapshot,
    summary_state,
)

KILLS = 5
# A share of coupon redemptions by member and template: their refusals must be remembered too, or a
# rerun would differ from a clean run (test_rerun_gives_the_same_answer_to_a_coupon_redemption_refused_first).
COUPON_REDEEM = 0.005
CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def program():
    return load_program(COFFEE)


# ------------------------------------------------------------------ kill -9 during `loyalty run`


@pytest.fixture(scope="module")
def kill_history(tmp_path_factory):
    """A 5,000-event history with daily trigger runs (points expire after 20 days) and coupon redemptions,
    and its clean run."""
    seed = pick_seed()
    print(f"seed={seed}")
    folder = tmp_path_factory.mktemp("kill")
    program = short_expiry_program(folder)
    history = generate(seed, 5000, 500, days=45, triggers=True, coupon_redeem=COUPON_REDEEM)
    raw = history.write(folder / "raw.jsonl")
    clean = folder / "clean.db"
    started = time.perf_counter()
    proc = subprocess.run(loyalty_run(program, raw, clean), capture_output=True, text=True, timeout=120)
    duration = time.perf_counter() - started
    assert proc.returncode in (0, 2), proc.stderr
    report = json.loads(proc.stdout)
    print(f"clean run: {report['lines']} lines in {duration:.1f}s, {len(report['errors'])} errors")
    conn = sqlite3.connect(clean)
    expired = conn.execute("SELECT count(*) FROM ledger WHERE kind = 'expire'").fetchone()[0]
    refused = conn.execute("SELECT count(*) FROM events WHERE status = 'refused'").fetchone()[0]
    conn.close()
    print(f"{expired} expiry entries, {refused} refusals remembered in the clean run")
    return seed, program, raw, clean, _events_in(clean), report


def _events_in(db) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def _kill_rounds(command, db, targets, rng, log: list[str]) -> int:
    """Start ``command`` once per target and SIGKILL it once ``db`` holds that many events; returns the kills."""
    kills = 0
    for round_, target in enumerate(targets, start=1):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while proc.poll() is None and _events_in(db) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert "locked" not in stderr, stderr
        conn = sqlite3.connect(db)
        try:
            assert check_invariants(conn) == [], f"after kill {round_}"
        finally:
            conn.close()
        log.append(f"round {round_}: rc {proc.returncode} at {_events_in(db)} events (target {target})")
    return kills


def test_kill_9_during_run_then_rerun_equals_a_clean_run(kill_history, tmp_path):
    """``loyalty run`` over the whole file, SIGKILLed at random points of its progress (once the database
    holds a random number of events, plus a random few milliseconds), then run again; finally run to the
    end. Once with one commit per line and once with ``--batch 100``, side by side on two databases."""
    seed, program, path, clean, total, clean_report = kill_history
    outcome: dict[int, object] = {}
    logs: dict[int, list[str]] = {1: [], 100: []}

    def loop(batch: int) -> None:
        rng = random.Random(seed * 1000 + batch)
        db = tmp_path / f"killed-{batch}.db"
        command = loyalty_run(program, path, db, "--batch", str(batch))
        targets = sorted(rng.randint(total // 20, total * 19 // 20) for _ in range(KILLS))
        try:
            kills = _kill_rounds(command, db, targets, rng, logs[batch])
            final = subprocess.run(command, capture_output=True, text=True, timeout=180)
            outcome[batch] = (db, kills, final)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            outcome[batch] = exc

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(batch,)) for batch in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"kill loops done in {time.perf_counter() - started:.1f}s")
    expected = snapshot(clean)
    for batch, log in logs.items():
        print(f"batch={batch}: " + "; ".join(log))
        if isinstance(outcome[batch], BaseException):
            raise outcome[batch]
        db, kills, final = outcome[batch]
        assert final.returncode in (0, 2), final.stderr
        report = json.loads(final.stdout)
        assert report["errors"] == clean_report["errors"], "the last run answered some line differently"
        assert "locked" not in final.stderr
        assert kills >= 3, f"batch={batch}: the runs finished before they could be killed"
        assert summary_state(db) == summary_state(clean), f"batch={batch}"
        assert diff(snapshot(db), expected) == [], f"batch={batch}"
        conn = sqlite3.connect(db)
        try:
            assert check_invariants(conn) == []
        finally:
            conn.close()


def _line(id_: str, type_: str, at: str, **fields) -> dict:
    return {"id": id_, "type": type_, "member": "m1", "at": f"2026-03-01T{at}:00+08:00", **fields}


def _coffee(sku: str, quantity: int, price: str = "32.00") -> list[dict]:
    return [{"sku": sku, "category": "coffee", "quantity": quantity, "unit_price": price}]


def _run_twice(lines: list[dict], tmp_path) -> tuple[dict, subprocess.CompletedProcess]:
    """``loyalty run`` a history, then again (as after a crash); the first report and the second process.

    The second run must answer every line as the first did and change nothing."""
    history = tmp_path / "h.jsonl"
    history.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / "h.db"
    first = subprocess.run(loyalty_run(COFFEE, history, db), capture_output=True, text=True, timeout=60)
    assert first.returncode == 2, first.stderr
    once = snapshot(db)
    second = subprocess.run(loyalty_run(COFFEE, history, db), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in second.stderr, second.stderr
    assert diff(snapshot(db), once) == [], "running the same history again changed the state"
    assert json.loads(second.stdout)["errors"] == json.loads(first.stdout)["errors"], "a line got another answer"
    assert second.returncode == 2, second.stderr
    return json.loads(first.stdout), second


def test_a_rerun_does_not_apply_a_redemption_the_first_run_refused(tmp_path):
    """A refusal is remembered under its id like any result (found by this suite; fixed in the engine).

    Running the same file again (which is how a run resumes after a crash)
    must not apply a redemption that was refused when the member had too few
    points, even though the member has enough by then.
    """
    first, _ = _run_twice(
        [
            _line("s-1", "signup", "09:00"),
            _line("x-1", "redeem", "09:30", points=50),
            _line("p-1", "purchase", "10:00", items=_coffee("LATTE_M", 1)),
        ],
        tmp_path,
    )
    assert first["refused"] == 1


def test_rerun_of_a_coupon_redemption_the_engine_refused(tmp_path):
    """A ``redeem_coupon`` line by member and template, refused by the engine (the basket has no
    Americano), is stored as a refusal; a rerun gives the same refusal (it once crashed reading it)."""
    _run_twice(
        [
            _line("s-1", "signup", "09:00"),
            _line("p-1", "purchase", "10:00", items=_coffee("LATTE_M", 9)),  # a full card: a FREE_COFFEE coupon
            _line("p-2", "purchase", "11:00", items=_coffee("LATTE_M", 1)),
            {"id": "c-1", "type": "redeem_coupon", "member": "m1", "template": "FREE_COFFEE", "purchase": "p-2"},
        ],
        tmp_path,
    )


def test_rerun_gives_the_same_answer_to_a_coupon_redemption_refused_first(tmp_path):
    """A ``redeem_coupon`` line by member and template that found no coupon is refused (``no_coupon``)
    inside the engine's idempotent transaction, so the refusal is remembered: a rerun (or a second process
    on the same file) does not apply it with the coupon the member got later."""
    _run_twice(
        [
            _line("s-1", "signup", "09:00"),
            _line("p-2", "purchase", "09:30", items=_coffee("AMERICANO_M", 1, "28.00")),
            {"id": "c-1", "type": "redeem_coupon", "member": "m1", "template": "FREE_COFFEE", "purchase": "p-2"},
            _line("p-1", "purchase", "10:00", items=_coffee("LATTE_M", 9)),  # the coupon comes after
        ],
        tmp_path,
    )


# ------------------------------------------------------------------ a failure at every step inside an event

WRITES = (
    "put_event",
    "save_member",
    "add_entries",
    "add_lots",
    "update_lots",
    "add_coupon",
    "update_coupon",
    "add_message",
    "add_activity",
    "add_tier_change",
    "add_firing",
    "void_firings",
    "add_budget",
    "add_returns",
)


class Crash(Exception):
    """The fault injected into a store method."""


def _at(day: int, hour: int) -> str:
    return dt.datetime(2026, 2 if day < 0 else 3, 25 + day if day < 0 else day, hour, tzinfo=CST).isoformat()


SIGNUP = {"id": "s-m1", "type": "signup", "member": "m1", "at": _at(-5, 9), "name": "王芳", "birthday": "1990-03-15"}
FIRST = {
    "id": "p-0",
    "type": "purchase",
    "member": "m1",
    "at": _at(-3, 10),
    "items": [{"sku": "LATTE_M", "category": "coffee", "quantity": 5, "unit_price": "32.00"}],
}
# On a Tuesday afternoon in the birthday month: points, stamps, a full punch card (coupon, message,
# stamps taken off), a big-basket coupon against a budget, a birthday bonus with its limit, a tier upgrade.
BIG = {
    "id": "p-big",
    "type": "purchase",
    "member": "m1",
    "at": _at(3, 15),
    "store": "SH-01",
    "items": [
        {"sku": "LATTE_M", "category": "coffee", "quantity": 10, "unit_price": "32.00"},
        {"sku": "BEANS_250G", "category": "merch", "quantity": 8, "unit_price": "88.00"},
    ],
}
REFUND = {"id": "r-big", "type": "refund", "member": "m1", "at": _at(4, 11), "original": "p-big", "items": []}
PARTIAL = {
    "id": "r-part",
    "type": "refund",
    "member": "m1",
    "at": _at(4, 12),
    "original": "p-big",
    "items": [{"sku": "LATTE_M", "quantity": 3}],
}
REDEEM_AT = dt.datetime(2026, 3, 5, 9, tzinfo=CST)

SCENARIOS = {
    "purchase": ([SIGNUP, FIRST], lambda e: e.process(BIG)),
    "full refund": ([SIGNUP, FIRST, BIG], lambda e: e.process(REFUND)),
    "partial refund": ([SIGNUP, FIRST, BIG], lambda e: e.process(PARTIAL)),
    "purchase with a parked refund": ([SIGNUP, FIRST, REFUND], lambda e: e.process(BIG)),
    "redemption": ([SIGNUP, FIRST], lambda e: e.redeem_points("m1", 100, "x-1", at=REDEEM_AT)),
}


def _open(program, path) -> Engine:
    return Engine(program, SQLiteStore(path, synchronous="NORMAL"))


def _instrument(store, fault: tuple[str, int, str] | None) -> Counter:
    """Count calls of the store's write methods; raise Crash before or after the k-th call of one."""
    calls: Counter = Counter()
    for name in WRITES:
        original = getattr(store, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            if fault == (_name, calls[_name], "before"):
                raise Crash(f"before {_name} #{calls[_name]}")
            out = _original(*args, **kwargs)
            if fault == (_name, calls[_name], "after"):
                raise Crash(f"after {_name} #{calls[_name]}")
            return out

        setattr(store, name, wrapper)
    return calls


def _uninstrument(store) -> None:
    for name in WRITES:
        store.__dict__.pop(name, None)


@pytest.fixture(scope="module")
def templates(program, tmp_path_factory):
    """Per scenario: a database with its setup applied, and one with the target event applied cleanly."""
    folder = tmp_path_factory.mktemp("crash")
    out = {}
    for n, (name, (setup, target)) in enumerate(SCENARIOS.items()):
        before = folder / f"s{n}.db"
        engine = _open(program, before)
        for event in setup:
            engine.process(event)
        engine.close()
        after = folder / f"s{n}-clean.db"
        shutil.copy(before, after)
        engine = _open(program, after)
        calls = _instrument(engine.store, None)
        result = target(engine)
        engine.close()
        out[name] = (before, snapshot(before), result, snapshot(after), dict(calls))
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_failure_at_every_store_step_rolls_back_and_the_retry_applies_once(program, templates, tmp_path, scenario):
    before, state_before, clean_result, state_clean, calls = templates[scenario]
    target = SCENARIOS[scenario][1]
    assert state_before != state_clean
    faults = [(name, k, when) for name, n in calls.items() for k in range(1, n + 1) for when in ("before", "after")]
    print(f"{scenario}: {len(faults)} crash points over {calls}")
    for fault in faults:
        db = tmp_path / "db.sqlite"
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"db.sqlite{suffix}").unlink(missing_ok=True)
        shutil.copy(before, db)
        engine = _open(program, db)
        _instrument(engine.store, fault)
        with pytest.raises(Crash):
            target(engine)
        assert not engine.store.conn.in_transaction, fault
        assert diff(snapshot(db), state_before) == [], f"{fault}: the failed event left something behind"
        _uninstrument(engine.store)
        result = target(engine)
        assert not result.duplicate, fault
        assert result == clean_result, fault
        assert target(engine).duplicate, fault
        assert check_invariants(engine.store.conn) == [], fault
        engine.close()
        assert diff(snapshot(db), state_clean) == [], f"{fault}: the retry differs from a clean run"


@pytest.mark.parametrize("scenario", ["purchase", "full refund", "purchase with a parked refund"])
def test_an_interrupt_at_any_sqlite_step_rolls_back_and_the_retry_applies_once(program, templates, tmp_path, scenario):
    """sqlite3's progress handler aborts the statement running at the k-th check, commits included.

    An interrupted write makes SQLite roll back the whole transaction (so do some SQLITE_FULL / IOERR /
    NOMEM errors); ``SQLiteStore.transaction()``'s nested branch must not then run ``ROLLBACK TO spN`` on a
    savepoint that is gone, which would replace the real error with ``no such savepoint``. Every event runs in such a savepoint
    now (``Engine.idempotent``), and so does every line of ``loyalty run --batch N``. The rollback itself
    is complete: everything else here passes.
    """
    before, state_before, clean_result, state_clean, _ = templates[scenario]
    target = SCENARIOS[scenario][1]
    every = 50  # VM instructions between checks

    def counting(engine, stop_at):
        count = [0]

        def handler():
            count[0] += 1
            return 1 if count[0] == stop_at else 0

        engine.store.conn.set_progress_handler(handler, every)
        return count

    db = tmp_path / "probe.db"
    shutil.copy(before, db)
    engine = _open(program, db)
    count = counting(engine, None)
    target(engine)
    engine.close()
    total = count[0]
    seed = pick_seed()
    rng = random.Random(seed)
    points = sorted({1, 2, total - 1, total, *rng.sample(range(1, total + 1), min(40, total))})
    print(f"seed={seed} {scenario}: {total} progress checks, interrupting at {len(points)} of them")
    errors = Counter()
    for k in points:
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"db.sqlite{suffix}").unlink(missing_ok=True)
        db = tmp_path / "db.sqlite"
        shutil.copy(before, db)
        engine = _open(program, db)
        counting(engine, k)
        try:
            target(engine)
        except (sqlite3.Error, LoyaltyError) as exc:
            errors[f"{type(exc).__name__}: {exc}"[:80]] += 1
            engine.store.conn.set_progress_handler(None, 0)
            assert not engine.store.conn.in_transaction, k
            assert diff(snapshot(db), state_before) == [], f"interrupt {k}: the failed event left something behind"
            result = target(engine)
            assert not result.duplicate and result == clean_result, k
        else:  # the interrupt hit after the last statement that checks progress: it applied
            engine.store.conn.set_progress_handler(None, 0)
            errors["applied"] += 1
        assert target(engine).duplicate, k
        assert check_invariants(engine.store.conn) == [], k
        engine.close()
        assert diff(snapshot(db), state_clean) == [], f"interrupt {k}: the retry differs from a clean run"
    print(dict(errors))
    masked = {e: n for e, n in errors.items() if "no such savepoint" in e}
    assert not masked, (
        "SQLite had already rolled back the whole transaction, and SQLiteStore.transaction()'s nested branch "
        f"('ROLLBACK TO spN') replaced the real error with: {masked}"
    )


@pytest.mark.parametrize("scenario", ["purchase", "full refund", "redemption"])
def test_a_commit_that_fails_rolls_back_with_a_store_error_and_the_retry_applies_once(
    program, templates, tmp_path, scenario
):
    """COMMIT itself fails (a deferred foreign-key violation slipped into the event's transaction)."""
    before, state_before, clean_result, state_clean, _ = templates[scenario]
    target = SCENARIOS[scenario][1]
    db = tmp_path / "db.sqlite"
    shutil.copy(before, db)
    engine = _open(program, db)
    store = engine.store
    original = store.put_event

    def put_event_then_break_a_key(event):
        original(event)
        store.conn.execute("PRAGMA defer_foreign_keys = ON")
        store.conn.execute(
            "INSERT INTO returns (purchase, line, quantity, refund) VALUES ('no-such-event', 0, '1', 'x')"
        )

    store.put_event = put_event_then_break_a_key
    with pytest.raises(StoreError, match="commit failed"):
        target(engine)
    del store.put_event
    assert not store.conn.in_transaction
    assert diff(snapshot(db), state_before) == []
    result = target(engine)
    assert not result.duplicate and result == clean_result
    assert target(engine).duplicate
    engine.close()
    assert diff(snapshot(db), state_clean) == []


# ------------------------------------------------------------------ storage errors
#
# A sqlite3 error raised by a statement inside a write transaction (read-only database, disk full, I/O
# error) must reach the caller as a StoreError, after a full rollback; the retry then applies exactly once.


def _fill(engine, events):
    for event in events:
        engine.process(event)


def _purchase(n: int, member: str = "m1") -> dict:
    return {
        "id": f"p-{n}",
        "type": "purchase",
        "member": member,
        "at": (dt.datetime(2026, 3, 6, 8, tzinfo=CST) + dt.timedelta(minutes=n)).isoformat(),
        "items": [
            {"sku": "LATTE_M", "category": "coffee", "quantity": 1 + n % 3, "unit_price": "32.00"},
            {"sku": "CROISSANT", "category": "bakery", "quantity": 1, "unit_price": "18.50"},
        ],
    }


def _storage_error_then_retry(engine, db, event, fail, restore):
    """Run ``event`` with ``fail`` applied; check a full rollback; ``restore`` and retry once."""
    state = snapshot(db)
    fail()
    with pytest.raises(Exception) as caught:  # noqa: PT011 - which error is what this test reports
        engine.process(event)
    assert not engine.store.conn.in_transaction
    assert engine.store.get_event(event["id"]) is None
    assert diff(snapshot(db), state) == [], "the failed event left something behind"
    assert engine.store.integrity_check() == "ok"
    restore()
    assert not engine.process(event).duplicate
    assert engine.process(event).duplicate
    assert check_invariants(engine.store.conn) == []
    return caught.value


@pytest.mark.parametrize("when", ["mid-event", "from the start"])
def test_a_read_only_database_rolls_back_with_a_documented_error(program, tmp_path, when):
    """Read-only by ``PRAGMA query_only`` (the tests run as root, where chmod does not stop writes)."""
    db = tmp_path / "ro.db"
    engine = _open(program, db)
    _fill(engine, [SIGNUP, FIRST])
    store = engine.store
    original = store.add_entries

    def read_only_then_write(entries):
        store.conn.execute("PRAGMA query_only = ON")
        return original(entries)

    def fail():
        if when == "mid-event":
            store.add_entries = read_only_then_write
        else:
            store.conn.execute("PRAGMA query_only = ON")

    def restore():
        store.__dict__.pop("add_entries", None)
        store.conn.execute("PRAGMA query_only = OFF")

    error = _storage_error_then_retry(engine, db, BIG, fail, restore)
    engine.close()
    print(f"read-only {when}: {type(error).__module__}.{type(error).__name__}: {error}")
    assert isinstance(error, StoreError), f"a read-only database raised {type(error).__name__}: {error}"


def _chattr(flag: str, path) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_an_immutable_database_file_fails_with_a_documented_error(program, tmp_path):
    """A database file that cannot be written (``chattr +i``: root ignores chmod): opening an engine on it
    and processing an event fails with a documented error and leaves the file as it was."""
    db = tmp_path / "immutable.db"
    engine = _open(program, db)
    _fill(engine, [SIGNUP, FIRST])
    engine.close()
    state = snapshot(db)
    if not _chattr("+i", db):
        pytest.skip("chattr +i is not available here")
    error = None
    try:
        store = SQLiteStore(db, synchronous="NORMAL")
        try:
            Engine(program, store).process(BIG)
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - the error is what this test reports
        error = exc
    finally:
        assert _chattr("-i", db)
    print(f"immutable file: {type(error).__module__}.{type(error).__name__}: {error}")
    assert error is not None, "an event was processed on a database file that cannot be written"
    assert diff(snapshot(db), state) == []
    engine = _open(program, db)
    assert engine.store.integrity_check() == "ok"
    assert not engine.process(BIG).duplicate
    engine.close()
    assert isinstance(error, StoreError), f"an unwritable database raised {type(error).__name__}: {error}"


def test_a_full_disk_mid_event_rolls_back_with_a_documented_error(program, tmp_path):
    """Disk full by ``PRAGMA max_page_count``: events go in until one does not fit."""
    db = tmp_path / "full.db"
    engine = _open(program, db)
    _fill(engine, [SIGNUP, FIRST])
    conn = engine.store.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    limit = conn.execute(f"PRAGMA max_page_count = {pages + 2}").fetchone()[0]
    failed = None
    for n in range(1, 2000):
        event = _purchase(n, member=f"m{n}")
        state = snapshot(db)
        try:
            engine.process(event)
        except Exception as exc:  # noqa: BLE001 - the error is what this test reports
            failed = (n, event, exc, state)
            break
    assert failed is not None, "the database never filled up"
    n, event, error, state = failed
    print(f"disk full at event {n} (max_page_count {limit}): {type(error).__module__}.{type(error).__name__}: {error}")
    assert not conn.in_transaction
    assert engine.store.get_event(event["id"]) is None
    assert diff(snapshot(db), state) == [], "the failed event left something behind"
    assert engine.store.integrity_check() == "ok"
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert not engine.process(event).duplicate
    assert engine.process(event).duplicate
    assert check_invariants(conn) == []
    engine.close()
    assert isinstance(error, StoreError), f"a full disk raised {type(error).__name__}: {error}"


def test_a_full_disk_during_a_batched_run_keeps_whole_lines_and_the_rerun_completes(program, tmp_path):
    """``run_lines(batch=10)`` (``loyalty run --batch 10``) meets a full disk: no line is half-applied, and
    once there is room again the same lines complete to a clean run's state."""
    lines = [json.dumps(_purchase(n, member=f"m{n % 7}")) for n in range(1, 80)]
    clean_db = tmp_path / "clean.db"
    engine = _open(program, clean_db)
    assert run_lines(engine, lines, batch=10).errors == []
    engine.close()
    db = tmp_path / "full.db"
    engine = _open(program, db)
    conn = engine.store.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 6}")
    error, report = None, None
    try:
        report = run_lines(engine, lines, batch=10)
    except Exception as exc:  # noqa: BLE001 - the error is what this test reports
        error = exc
    done = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"batched run on a full disk: {done} of {len(lines)} lines in; raised {error!r}; report {report}")
    assert not conn.in_transaction
    assert 0 < done < len(lines)
    assert check_invariants(conn) == []
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert run_lines(engine, lines, batch=10).errors == []
    engine.close()
    assert diff(snapshot(db), snapshot(clean_db)) == []
    documented = isinstance(error, StoreError) or (error is None and report.errors)
    assert documented, f"a full disk during a batched run raised {type(error).__name__}: {error}"
