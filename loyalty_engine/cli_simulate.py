"""``loyalty`` commands of the analyst's workbench: generate-history and simulate."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cli import EXIT_INPUT, _input_error, _load, err, main, out
from .engine.outcome import fmt
from .simulate.generate import generate_history
from .simulate.report import _d, compare, public

MAX_LINES_SHOWN = 20


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _input_error(f"{option}: {value!r} is not a date (YYYY-MM-DD)")


def _num(value) -> str:
    return fmt(_d(value))


# ------------------------------------------------------------------ generate-history


@main.command("generate-history")
@click.option("--members", "members", required=True, type=click.IntRange(min=1), help="How many members.")
@click.option("--months", required=True, type=click.IntRange(min=1), help="How many months of history.")
@click.option("--seed", required=True, type=int, help="Random seed: the same seed writes the same files.")
@click.option("--start", help="First day of the history (YYYY-MM-DD, default 2026-01-01).")
@click.option(
    "--program",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this program's timezone, categories and coupons.",
)
@click.option(
    "--out",
    "out_dir",
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
    show_default=True,
    help="Output folder.",
)
def generate_history_command(members: int, months: int, seed: int, start, program, out_dir: Path) -> None:
    """Write a seeded sample history: members.jsonl and events.jsonl (wire format, sorted by time).

    Members have rhythms (frequent, occasional, rare; a share lapse), purchases
    follow weekdays, months and holidays, some are refunded (fully or partly)
    and members redeem points.
    """
    prog = _load(program) if program else None
    counts = generate_history(
        out_dir, members=members, months=months, seed=seed, start=_date(start, "--start"), program=prog
    )
    events = sum(n for k, n in counts.items() if k != "members")
    kinds = ", ".join(f"{n:,} {k}" for k, n in counts.items() if k != "members")
    out.print(f"wrote {out_dir / 'members.jsonl'}: {counts['members']:,} members", markup=False)
    out.print(f"wrote {out_dir / 'events.jsonl'}: {events:,} events ({kinds})", markup=False)


# ------------------------------------------------------------------ simulate


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _run(program, events: Path, members: Path | None, start, end, point_value: Decimal, show: bool, jobs: int) -> dict:
    try:
        return _replay(program, events, members, start, end, point_value, show, jobs)
    except UnicodeDecodeError as exc:
        for what, path in (("--members", members), ("--events", events)):
            if path is not None and _first_bad_line(path):
                _input_error(
                    f"{path}:{_first_bad_line(path)}: {what} file is not UTF-8 text ({exc.reason}); save it as UTF-8"
                )
        raise


MAX_AUTO_JOBS = 8  # every process reads the whole file: past a few, reading it is what they share out least
AUTO_JOBS_LINES = 50_000  # below this a replay takes seconds, and one process is simplest


def _jobs(jobs: str, events: Path) -> int:
    """How many processes ``--jobs`` asks for."""
    if jobs == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return min(cpus, MAX_AUTO_JOBS) if _count_lines(events) >= AUTO_JOBS_LINES else 1
    try:
        count = int(jobs)
    except ValueError:
        count = 0
    if count < 1:
        _input_error(f"--jobs: expected a whole number from 1, or auto (got {jobs!r})")
    return count


def _first_bad_line(path: Path) -> int | None:
    """The number of the first line of ``path`` that is not UTF-8 (None when all are)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _replay(
    program, events: Path, members: Path | None, start, end, point_value: Decimal, show: bool, jobs: int
) -> dict:
    from .simulate.replay import simulate

    if not show:
        return simulate(program, events, members, start=start, end=end, point_value=point_value, jobs=jobs)
    total = _count_lines(events)
    # Redrawn by the updates, not by rich's own thread: the replay may fork its processes, and a thread
    # writing to the terminal at that moment would leave its lock held in the children.
    with Progress(
        TextColumn(f"[bold]{program.name}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        console=err, transient=True, auto_refresh=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("replay", total=total)
        step = max(1, total // 200)
        shown = [0]

        def progress(number: int) -> None:  # every line from one process; every few thousand from several
            if number - shown[0] >= step:
                bar.update(task, completed=number, refresh=True)
                shown[0] = number

        return simulate(
            program, events, members, start=start, end=end, point_value=point_value, progress=progress, jobs=jobs
        )


@main.command()
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--events", "events", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="History to replay: JSON lines (.jsonl) or CSV (.csv, one row per line item).",
)  # fmt: skip
@click.option(
    "--members", "members", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Members (JSON lines or CSV), created before the first event.",
)  # fmt: skip
@click.option(
    "--against", "against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another program (version) to replay the same history through and compare.",
)  # fmt: skip
@click.option("--from", "start", help="First day to replay (YYYY-MM-DD, local to the program).")
@click.option("--to", "end", help="Last day to replay (inclusive).")
@click.option("--point-value", default="0.01", show_default=True, help="What one point costs, in the currency.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a report page.")
@click.option(
    "--jobs", default="auto", show_default=True,
    help="Processes to replay in, the members shared between them: a number, or auto (one per CPU, up to "
    f"{MAX_AUTO_JOBS}, for histories of {AUTO_JOBS_LINES:,} lines or more). The figures are the same; a "
    "program-wide budget or coupon total that could run out, or lines that touch two members, mean one process.",
)  # fmt: skip
def simulate(program, events, members, against, start, end, point_value, as_json, html_path, jobs) -> None:
    """Replay a history through a program in memory and report what it would have cost.

    Runs expiry, tier reviews and retention triggers day by day; reports points
    issued, redeemed and expired, the outstanding liability, per-rule points,
    tiers, coupons and triggers. --against compares two programs on the same
    history. Bad lines are reported with their line number and skipped (exit 2).
    """
    try:
        value = Decimal(point_value)
    except InvalidOperation:
        _input_error(f"--point-value: {point_value!r} is not a number")
    if not value.is_finite() or value < 0:
        _input_error(f"--point-value: must be a number >= 0 (got {point_value})")
    first, last = _date(start, "--from"), _date(end, "--to")
    if first and last and last < first:
        _input_error("--to is before --from")
    show = sys.stderr.isatty() and not as_json
    prog = _load(program)
    processes = _jobs(jobs, events)
    figures = _run(prog, events, members, first, last, value, show, processes)
    other = comparison = None
    if against is not None:
        other = _run(_load(against), events, members, first, last, value, show, processes)
        comparison = compare(figures, other)
    if jobs != "auto":  # asked for: say when it could not be done
        for f in (figures, other):
            note = (f or {}).get("replay", {}).get("note")
            if note:
                err.print(f"note: {note}", markup=False)
    if html_path is not None:
        from .simulate.html import render

        html_path.write_text(render(figures, other, comparison), encoding="utf-8")
    if as_json:
        data = public(figures)
        if other is not None:
            data = {"a": data, "b": public(other), "comparison": comparison}
        out.print_json(json.dumps(data, ensure_ascii=False))
    else:
        _print(figures, other, comparison)
        if html_path is not None:
            out.print(f"report: {html_path}", markup=False)
    invalid = _report_lines(figures, events, members)  # after the figures: the skipped lines close the report
    if invalid:
        sys.exit(EXIT_INPUT)


def _report_lines(figures: dict, events: Path, members: Path | None) -> int:
    """Print the bad lines (file:line: problem) on stderr; returns how many were not business refusals."""
    names = {"events": events.name, "members": members.name if members else "members"}
    info = figures["events"]
    refused = sum(info["refused"].values())
    shown = 0
    for e in info["error_lines"]:
        if e["code"] is None and shown < MAX_LINES_SHOWN:
            err.print(f"{names[e['file']]}:{e['line']}: {e['error']}", markup=False)
            shown += 1
    if info["errors"] - refused > shown:
        err.print(f"... and {info['errors'] - refused - shown} more", markup=False)
    if refused:
        codes = ", ".join(f"{code} x{n}" for code, n in sorted(info["refused"].items()))
        err.print(f"refused and skipped: {codes}", markup=False)
    return info["errors"] - refused


def _print(f: dict, other: dict | None, c: dict | None) -> None:
    p = f["points"]
    period = f["period"]
    applied = ", ".join(f"{n:,} {k}" for k, n in f["events"]["applied"].items()) or "no events applied"
    days = f"{period['from']} to {period['to']} ({period['days']} days)" if period["from"] else "no day"
    out.print(
        f"{f['program']['name']} ({f['program']['currency']}, {f['program']['timezone']}), version {f['program']['version']}",
        markup=False,
    )
    out.print(
        f"replayed {days}: {f['members']['count']:,} members; "
        f"{applied}; {f['events']['errors']:,} lines skipped ({sum(f['events']['refused'].values()):,} refused)",
        markup=False,
    )
    if c is not None:
        out.print(f"against {other['program']['name']}, version {other['program']['version']}", markup=False)
        table = Table("figure", "A", "B", "B - A", title="A and B side by side", title_justify="left")
        for r in c["figures"]:
            table.add_row(r["figure"], _num(r["a"]), _num(r["b"]), _num(r["difference"]))
        out.print(table)
        rules = Table(
            "rule", "hits A", "hits B", "points A", "points B", "B - A", title="per rule", title_justify="left"
        )
        for r in c["rules"]:
            rules.add_row(
                r["rule"], f"{r['hits_a']:,}", f"{r['hits_b']:,}", _num(r["points_a"]), _num(r["points_b"]),
                _num(r["difference"]),
            )  # fmt: skip
        out.print(rules)
        members = Table(
            "member", "earned A", "earned B", "B - A", "tier A", "tier B",
            title=f"members whose outcome changed most ({c['members_changed']:,} changed)", title_justify="left",
        )  # fmt: skip
        for m in c["members"]:
            members.add_row(
                m["member"], _num(m["earned_a"]), _num(m["earned_b"]), _num(m["difference"]), m["tier_a"] or "-",
                m["tier_b"] or "-",
            )  # fmt: skip
        out.print(members)
        return
    table = Table("points", "amount", title="points", title_justify="left")
    table.add_row("issued", _num(p["issued"]))
    table.add_row("reversed by refunds", _num(p["reversed"]))
    table.add_row("redeemed", _num(p["redeemed"]))
    table.add_row("expired", _num(p["expired"]))
    table.add_row("outstanding", _num(p["outstanding"]))
    table.add_row(f"liability at {p['point_value']} a point", f"{_num(p['liability'])} {p['currency']}")
    out.print(table)
    rules = Table("rule", "hits", "points", "reversed", title="per rule", title_justify="left")
    for r in f["rules"]:
        rules.add_row(r["rule"], f"{r['hits']:,}", _num(r["points"]), _num(r["reversed"]))
    out.print(rules)
    tiers = ", ".join(f"{t} {n:,}" for t, n in f["tiers"]["final"].items())
    out.print(
        f"tiers at the end: {tiers}; upgrades {f['tiers']['upgrades']:,}, downgrades {f['tiers']['downgrades']:,}"
    )
    coupons = "; ".join(
        f"{t} {c['issued']:,} issued, {c['redeemed']:,} redeemed" + (f", {c['void']:,} void" if c["void"] else "")
        for t, c in f["coupons"].items()
    )
    out.print(f"coupons: {coupons or 'none'}", markup=False)
    if f["rewards"]:
        rewards = "; ".join(
            f"{k} {_num(r['granted'])} granted to {r['count']:,} events, {_num(r['reversed'])} taken back by refunds"
            for k, r in f["rewards"].items()
        )
        out.print(f"plugin rewards: {rewards}", markup=False)
    fired = ", ".join(f"{t} x{n:,}" for t, n in f["triggers"].items())
    out.print(f"triggers fired: {fired or 'none'}; messages queued: {f['messages']:,}", markup=False)
    top = ", ".join(
        f"{m['member']} {m['name'] or ''} {_num(m['earned'])}".replace("  ", " ") for m in f["top_members"][:5]
    )
    out.print(f"top members by points earned: {top or '-'}", markup=False)
