"""``loyalty`` commands that work on a database: run, member, triggers, redeem, import-members, deliver, demo."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cli import EXIT_INPUT, _input_error, _load, err, main, out
from .engine.outcome import fmt
from .errors import LoyaltyError, RefusedError
from .program import Program
from .service.engine import Engine
from .store.sqlite import SQLiteStore

EXIT_STORE = 3  # the database failed (disk full, read-only...): nothing half-written, rerun to resume
DB_HELP = "SQLite database file (created if missing)."
# --db of the commands that read or change an existing database
used_db = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default="loyalty.db",
    show_default=True,
    help="SQLite database file (the one 'loyalty run' or 'import-members' wrote).",
)
PROGRAM_HELP = "Program file (default: the program the database was last used with)."


def _program_from_db(store: SQLiteStore) -> Program | None:
    """Rebuild the program last used with this database from the text kept in it."""
    latest = store.latest_program()
    if latest is None:
        return None
    version, files = latest
    absolute = [os.path.abspath(p) for p in files]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    folder = Path(tempfile.gettempdir()) / f"loyalty-program-{version[:16]}"  # one folder per version, reused
    paths = []
    for name, text in zip(absolute, files.values()):
        target = folder / os.path.relpath(name, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text + "\n":
            target.write_text(text + "\n", encoding="utf-8")
        paths.append(target)
    return _load(paths[0])


def open_engine(program: Path | None, db: Path, synchronous: str = "FULL", must_exist: bool = False) -> Engine:
    if must_exist and not db.exists():
        _input_error(f"database '{db}' does not exist (run 'loyalty run PROGRAM EVENTS --db {db}' first)")
    try:
        store = SQLiteStore(db, synchronous=synchronous)
    except LoyaltyError as exc:
        _input_error(str(exc))
    prog = _load(program) if program else _program_from_db(store)
    if prog is None:
        _input_error(f"database '{db}' has no program yet: pass --program PROGRAM")
    return Engine(prog, store)


def _progress(enabled: bool, total: int | None, what: str) -> Progress | None:
    if not enabled:
        return None
    return Progress(
        TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _num(value) -> str:
    return fmt(Decimal(value))


# ------------------------------------------------------------------ run


@main.command()
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default="loyalty.db", show_default=True, help=DB_HELP
)
@click.option("--stop-on-error", is_flag=True, help="Stop at the first bad line (default: report it and go on).")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Lines per commit (each line still all-or-nothing).",
)
@click.option(
    "--synchronous", type=click.Choice(["full", "normal"], case_sensitive=False), default="full", show_default=True,
    help="Durability: FULL survives power loss; NORMAL is faster and survives application crashes.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--shadow",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A candidate program evaluated beside PROGRAM on every event (not applied); see 'loyalty shadow-report'.",
)
def run(
    program: Path,
    events: Path,
    db: Path,
    stop_on_error: bool,
    batch: int,
    synchronous: str,
    as_json: bool,
    shadow: Path | None,
):
    """Process a history file (JSON lines) in order: events, redemptions, adjustments, triggers.

    Idempotent: running the same file again applies nothing twice. A bad line
    is reported with its line number; exit status 2 when any line failed or was
    refused, 3 when the database failed (rerun the file to resume).
    """
    from .service.replay import run_lines

    engine = open_engine(program, db, synchronous)
    if shadow is not None:
        engine.shadow(_load(shadow))
    bar = _progress(sys.stderr.isatty() and not as_json, None, "processing")
    with engine, open(events, "rb") as f:  # read_lines decodes line by line: a bad line is reported, not fatal
        if bar is not None:
            with bar:
                task = bar.add_task("run", total=_count_lines(events))
                report = run_lines(
                    engine, f, stop_on_error=stop_on_error, batch=batch, progress=lambda n: bar.advance(task, n)
                )
        else:
            report = run_lines(engine, f, stop_on_error=stop_on_error, batch=batch)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for number, problem in report.errors[:50]:
            err.print(f"{events}:{number}: {problem}", markup=False)
        if len(report.errors) > 50:
            err.print(f"... and {len(report.errors) - 50} more", markup=False)
        out.print(
            f"{report.lines} lines: {report.applied} applied, {report.duplicates} already done, "
            f"{report.parked} parked, {len(report.errors)} failed"
            + (f" (stopped at line {report.stopped_at})" if report.stopped_at else "")
        )
        if report.totals:
            out.print("balance changes: " + ", ".join(f"{_num(v)} {b}" for b, v in report.totals.items()))
        out.print(f"coupons issued: {report.coupons}, messages queued: {report.messages}")
        if report.storage_failed:
            err.print(
                f"stopped at line {report.stopped_at} by a storage error; lines since the last commit were rolled "
                "back. Fix the cause and run the same file again: what was applied is not applied twice.",
                markup=False,
            )
    sys.exit(EXIT_STORE if report.storage_failed else EXIT_INPUT if report.errors else 0)


# ------------------------------------------------------------------ member


@main.command()
@click.argument("member_id")
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def member(member_id: str, db: Path, program: Path | None, as_json: bool):
    """Show a member: balances (available, pending, expiring), tier and progress, coupons, history."""
    with open_engine(program, db, must_exist=True) as engine:
        try:
            view = engine.member(member_id)
        except RefusedError as exc:
            _input_error(exc.reason)
    if as_json:
        click.echo(json.dumps(view.to_dict(), ensure_ascii=False, indent=2))
        return
    m = view.member
    out.print(f"[bold]{m.id}[/bold] {m.name or ''}  joined {m.joined or '-'}  birthday {m.birthday or '-'}")
    table = Table("balance", "total", "available", "pending", "debt", "next expiry")
    for name, b in view.balances.items():
        first = min((x for _, r, x in b.lots if x is not None and r > 0), default=None)
        due = sum((r for _, r, x in b.lots if x == first), Decimal(0)) if first else Decimal(0)
        pending = ", ".join(f"{_num(a)} on {d}" for d, a in b.pending) or "-"
        expiry = f"{_num(due)} on {first}" if first else "-"
        table.add_row(name, _num(b.total), _num(b.available), pending, _num(b.debt), expiry)
    out.print(table)
    if view.tier is not None:
        t = view.tier
        progress = f"{_num(t.needed)} more {t.metric} for {t.next_tier}" if t.next_tier else "top tier"
        review = f", review {t.review}" if t.review else ""
        grace = f", grace until {t.grace_until}" if t.grace_until else ""
        out.print(
            f"tier: [bold]{t.name}[/bold] since {t.since}{review}{grace}; "
            f"{t.metric} over {t.window}: {_num(t.value)} ({progress})"
        )
    for reward, units in view.rewards.items():
        shown = ", ".join(f"{fmt(v)} {u}".strip() for u, v in units.items())
        out.print(f"{reward}: {shown}", markup=False)
    if view.coupons:
        out.print("coupons: " + ", ".join(f"{c.code} ({c.status}, until {c.valid_until or '-'})" for c in view.coupons))
    history = Table("when", "balance", "kind", "amount", "rule / reason", "event", title="recent ledger entries")
    for e in view.history:
        history.add_row(e.at.isoformat(), e.balance, e.kind, _num(e.amount), e.rule or e.reason or "", e.event or "")
    out.print(history)


# ------------------------------------------------------------------ triggers


@main.command()
@click.option("--as-of", "as_of", required=True, help="Local day (YYYY-MM-DD) or time with offset.")
@click.option("--to", "until", help="Run every day from --as-of to this day (inclusive).")
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def triggers(as_of: str, until: str | None, db: Path, program: Path | None, as_json: bool):
    """Run expiry, tier review and retention triggers for a day (or a range). Safe to repeat."""
    from .wire import _datetime

    try:
        start = dt.date.fromisoformat(as_of) if len(as_of) == 10 else _datetime(as_of)
    except ValueError as exc:
        message = str(exc) if str(exc).startswith(repr(as_of)) else f"{as_of!r} is not a day (YYYY-MM-DD)"
        _input_error(f"--as-of: {message}")
    try:
        end = dt.date.fromisoformat(until) if until else None
    except ValueError:
        _input_error(f"--to: {until!r} is not a day (YYYY-MM-DD)")
    days = [start]
    if end is not None:
        first = start if isinstance(start, dt.date) and not isinstance(start, dt.datetime) else start.date()
        if end < first:
            _input_error(f"--to {end} is before --as-of {first}")
        days = [first + dt.timedelta(days=n) for n in range((end - first).days + 1)]
    reports = []
    with open_engine(program, db, must_exist=True) as engine:
        for day in days:
            reports.append(engine.run_triggers(day))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2))
        return
    for r in reports:
        if r.already_done and not r.expired and not (r.upgrades or r.downgrades):
            out.print(f"{r.day}: already run")
            continue
        fired = ", ".join(f"{k} x{v}" for k, v in r.fired.items()) or "none"
        expired = ", ".join(f"{_num(v)} {k}" for k, v in r.expired.items()) or "nothing"
        out.print(
            f"{r.day}: expired {expired} ({r.expired_members} members); tiers +{r.upgrades} -{r.downgrades} "
            f"(grace started {r.grace_started}); triggers {fired}; {r.messages} messages queued"
        )


# ------------------------------------------------------------------ redeem


@main.group()
def redeem():
    """Redeem points or a coupon for a member."""


@redeem.command("points")
@click.argument("member_id")
@click.argument("points")
@click.option("--reference", required=True, help="Unique reference (a retry with it is not applied twice).")
@click.option("--balance", default="points", show_default=True, help="The balance to spend from.")
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
def redeem_points(member_id: str, points: str, reference: str, balance: str, db: Path, program: Path | None):
    """Spend POINTS of MEMBER_ID's balance (the ones expiring first go first)."""
    with open_engine(program, db, must_exist=True) as engine:
        try:
            result = engine.redeem_points(member_id, points, reference, balance)
        except LoyaltyError as exc:
            _input_error(str(exc))
    note = " (already done: nothing changed)" if result.duplicate else ""
    out.print(f"redeemed {_num(-result.totals.get(balance, 0))} {balance} for {member_id}{note}")


@redeem.command("coupon")
@click.argument("code")
@click.option(
    "--purchase", "purchase_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The basket: a purchase event as JSON.",
)  # fmt: skip
@click.option("--reference", help="Unique reference (default: the code and the purchase id).")
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
def redeem_coupon(code: str, purchase_file: Path, reference: str | None, db: Path, program: Path | None):
    """Use coupon CODE on the basket in --purchase (a JSON event); prints the discount."""
    from .cli import _read_json

    purchase = _read_json(purchase_file, "purchase")
    with open_engine(program, db, must_exist=True) as engine:
        try:
            result = engine.redeem_coupon(code, purchase, reference)
        except LoyaltyError as exc:
            _input_error(str(exc))
    out.print(f"coupon {code}: {result.value['discount']} off")


# ------------------------------------------------------------------ import-members


@main.command("import-members")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def import_members_cmd(file: Path, db: Path, program: Path | None, as_json: bool):
    """Create members with their opening state from JSON lines or CSV (idempotent on the member id)."""
    from .service.imports import import_members

    with open_engine(program, db) as engine:
        report = import_members(engine, file)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for number, problem in report.errors:
            err.print(f"{file}:{number}: {problem}", markup=False)
        opening = ", ".join(f"{_num(v)} {k}" for k, v in report.opening.items()) or "none"
        out.print(
            f"{report.rows} rows: {report.created} created, {report.updated} updated, "
            f"{report.skipped} already imported, {len(report.errors)} failed; opening balances {opening}"
        )
    sys.exit(EXIT_INPUT if report.errors else 0)


# ------------------------------------------------------------------ deliver


@main.command()
@used_db
@click.option("--program", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=PROGRAM_HELP)
@click.option("--channel", "channels", multiple=True, help="Deliver only these channels (default: all).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Channel settings, [channels.NAME] tables (default: ./loyalty.toml when present).")  # fmt: skip
@click.option("--console", "console", is_flag=True,
              help="Print the messages of channels without settings instead of leaving them queued.")  # fmt: skip
def deliver(db: Path, program: Path | None, channels: tuple[str, ...], config_path: Path | None, console: bool):
    """Deliver queued messages through the channels' senders, with retries and backoff.

    Without a configuration file every message is printed to the console with
    its dedupe key (a dry run). With one, each channel is built from its
    [channels.NAME] settings; channels left without settings keep their
    messages queued (or print them, with --console).
    """
    from .config import load_config

    try:
        config = load_config(config_path)
    except LoyaltyError as exc:
        _input_error(str(exc))
    with open_engine(program, db, must_exist=True) as engine:
        known = tuple(engine.program.checked.schema.channels)
        for name in channels:
            if name not in known:
                from .language.diagnostics import did_you_mean

                hint = did_you_mean(name, known) or f"channels: {', '.join(known)}"
                _input_error(f"--channel: unknown channel '{name}'; {hint}")
        names = channels or known
        settings = (config or {}).get("channels", {})
        senders, missing = engine.senders(settings, console_fallback=console or config is None, only=names)
        waiting = engine.store.pending_channels()
        for name, reason in sorted(missing.items()):
            if waiting.get(name):
                err.print(f"{name}: {waiting[name]} message(s) stay queued: {reason}", markup=False)
        report = engine.deliver(senders)
    for line in report.errors:
        err.print(line, markup=False)
    from .service.outbox import MAX_AGE, duration_text

    wait = duration_text(MAX_AGE)
    stale = f" ({report.stale} older than the {wait} a message may wait, so not sent)" if report.stale else ""
    out.print(f"sent {report.sent}, will retry {report.retried}, dead-lettered {report.dead}{stale}")


# ------------------------------------------------------------------ demo


@main.command()
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="Where to build the demo database "
              "(must not exist; default: a new temporary file).")  # fmt: skip
def demo(db: Path | None):
    """Build a fresh database from the bundled coffee-chain program and history, and summarise it."""
    from .examples import example_history, example_program
    from .service.replay import run_lines

    if db is None:
        db = Path(tempfile.mkdtemp(prefix="loyalty-demo-")) / "demo.db"
    elif db.exists():
        _input_error(f"'{db}' already exists: the demo builds a fresh database (pick another path)")
    history = example_history("coffee_chain")
    engine = Engine.open(example_program("coffee_chain"), db)
    prog = engine.program
    with engine, open(history, encoding="utf-8") as f:
        report = run_lines(engine, f, batch=200)
        summary = engine.store.summary()
        top = engine.store.top_earners("points", 5)
    out.print(
        f"[bold]{prog.name}[/bold] ({prog.currency}, {prog.timezone}): {len(prog.checked.rules)} rules, "
        f"{len(prog.checked.triggers)} triggers, version {prog.version[:12]}"
    )
    out.print(f"history: {history.name}, {report.lines} lines -> database {db}")
    events = summary["events"]
    out.print(
        f"members: {summary['members']}; purchases: {events.get('purchase', 0)}, refunds: {events.get('refund', 0)}, "
        f"points redemptions: {events.get('redeem', 0)}, coupons used: {events.get('coupon', 0)}"
    )
    if report.errors:
        out.print(
            f"lines refused or failed: {len(report.errors)} (e.g. line {report.errors[0][0]}: {report.errors[0][1]})"
        )
    table = Table("balance", "earned", "reversed by refunds", "redeemed", "expired", "outstanding", title="ledger")
    for balance, kinds in summary["ledger"].items():
        outstanding = sum(kinds.values(), Decimal(0))
        table.add_row(
            balance,
            _num(kinds.get("earn", 0)),
            _num(-kinds.get("reverse", 0)),
            _num(-kinds.get("redeem", 0)),
            _num(-kinds.get("expire", 0)),
            _num(outstanding),
        )
    out.print(table)
    out.print(
        "tiers: " + ", ".join(f"{k} {v}" for k, v in summary["tiers"].items()) + f" ({summary['tier_changes']} changes)"
    )
    coupons = [
        f"{t}: {sum(s.values())} issued, {s.get('redeemed', 0)} redeemed"
        + (f", {s['void']} void" if s.get("void") else "")
        for t, s in summary["coupons"].items()
    ]
    out.print("coupons: " + ("; ".join(coupons) or "none"))
    out.print("triggers fired: " + (", ".join(f"{k} x{v}" for k, v in summary["triggers"].items()) or "none"))
    out.print("outbox: " + (", ".join(f"{v} {k}" for k, v in summary["outbox"].items()) or "empty"))
    out.print("top members by points earned: " + ", ".join(f"{m} {name or ''} ({_num(p)})" for m, name, p in top))
    out.print(f"look closer: loyalty member {top[0][0] if top else 'm-1001'} --db {db}")
