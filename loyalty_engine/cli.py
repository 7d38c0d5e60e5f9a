"""The ``loyalty`` command line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import InputError, LoyaltyError, PluginError, RuleFileError
from .program import Program, check_program, load_program
from .wire import structure_context, structure_event

EXIT_RULES = 1
EXIT_INPUT = 2

# Pipes and CI logs get a wide, fixed width instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 150)


class _Main(click.Group):
    """The command group: plugins that cannot load together (a name registered twice) end any command readably."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PluginError as exc:
            err.print(f"error: {exc}", markup=False)
            sys.exit(EXIT_RULES)
        except RuleFileError as exc:
            for diag in exc.diagnostics:
                err.print(diag.render(), markup=False)
            sys.exit(EXIT_RULES)
        except LoyaltyError as exc:  # a documented error a command did not handle itself: readable, never a traceback
            err.print(f"error: {exc}", markup=False)
            sys.exit(EXIT_INPUT)
        except UnicodeDecodeError as exc:
            err.print(f"error: a file is not UTF-8 text ({exc.reason} at byte {exc.start})", markup=False)
            sys.exit(EXIT_INPUT)
        except OSError as exc:
            if exc.filename is None:
                raise
            err.print(f"error: cannot read '{exc.filename}': {exc.strerror}", markup=False)
            sys.exit(EXIT_INPUT)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="loyalty-engine")
def main() -> None:
    """loyalty-engine: check loyalty programs and evaluate events against them."""


# ------------------------------------------------------------------ check


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as JSON on stdout.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def check(files: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Check rule files: exit 0 when clean, 1 on errors (printed on stderr).

    A directory checks every .loy file in it. Each diagnostic reads
    path:line:col: error: message, then the source line, a caret and a hint.
    """
    paths = _expand(files)
    failed = False
    report = []
    for path in paths:
        result = check_program(path)
        errors, warnings = result.errors, result.warnings
        failed = failed or bool(errors) or (strict and bool(warnings))
        if as_json:
            report.append(
                {"file": str(path), "ok": not errors, "diagnostics": [d.to_dict() for d in result.diagnostics]}
            )
            continue
        for diag in result.diagnostics:
            err.print(diag.render(), markup=False)
        status = "ok" if not errors else f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        if warnings:
            status += f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        (err if errors else out).print(f"{path}: {status}", markup=False)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    sys.exit(EXIT_RULES if failed else 0)


def _expand(files) -> list[Path]:
    paths: list[Path] = []
    for f in files:
        if f.is_dir():
            found = sorted(f.rglob("*.loy"))
            if not found:  # checking nothing must not look like a clean check
                err.print(f"{f}: error: no .loy files in this folder", markup=False)
                sys.exit(EXIT_RULES)
            paths.extend(found)
        else:
            paths.append(f)
    return paths


# ------------------------------------------------------------------ eval


def _load(path: Path) -> Program:
    try:
        return load_program(path)
    except RuleFileError as exc:
        for diag in exc.diagnostics:
            err.print(diag.render(), markup=False)
        sys.exit(EXIT_RULES)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        _input_error(f"{what} file '{path}' does not exist")
    except IsADirectoryError:
        _input_error(f"{what} file '{path}' is a directory")
    except UnicodeDecodeError as exc:
        _input_error(f"{path}: {what} file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
    except json.JSONDecodeError as exc:
        _input_error(f"{path}:{exc.lineno}:{exc.colno}: {what} is not valid JSON: {exc.msg}")


def _input_error(message: str):
    err.print(f"error: {message}", markup=False)
    sys.exit(EXIT_INPUT)


def evaluation_inputs(program: Path, event_file: Path, member_file: Path | None, as_of: str | None):
    """(program, event, member context or None, as-of time or None) from the options of eval and explain."""
    prog = _load(program)
    event_data = _read_json(event_file, "event")
    member_data = _read_json(member_file, "member") if member_file is not None else None
    try:
        when = as_of_option(as_of)
        event = structure_event(event_data, prog.event_types)
        context = None
        if member_data is not None:
            context = structure_context(member_data, prog.checked.schema.member_attributes)
        if event.type not in prog.event_types:
            raise InputError([("type", f"'{event.type}' is not an event type this program knows")], "event")
    except InputError as exc:
        _input_error(str(exc))
    return prog, event, context, when


def as_of_option(as_of: str | None) -> dt.datetime | None:
    """The --as-of option of eval and explain: an ISO 8601 time with its offset."""
    if not as_of:
        return None
    try:
        when = dt.datetime.fromisoformat(as_of.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            [("--as-of", f"{as_of!r} is not an ISO 8601 time (write e.g. 2026-05-03T10:15:00+08:00)")], "option"
        ) from None
    if when.utcoffset() is None:
        raise InputError([("--as-of", f"{as_of!r} has no timezone offset")], "option")
    return when


@main.command("eval")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_file", required=True, type=click.Path(path_type=Path), help="Event JSON file.")
@click.option(
    "--member", "member_file", type=click.Path(path_type=Path), help="Member JSON file (with optional context)."
)
@click.option("--as-of", "as_of", help="Evaluate as if at this ISO 8601 time (with offset).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def eval_(program: Path, event_file: Path, member_file: Path | None, as_of: str | None, as_json: bool) -> None:
    """Evaluate one event against PROGRAM and show every effect with its explanation.

    Nothing is stored. A malformed event or member exits 2 naming the field.
    """
    prog, event, context, when = evaluation_inputs(program, event_file, member_file, as_of)
    try:
        outcome = prog.evaluate(event, context, when)
    except InputError as exc:
        _input_error(str(exc))
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), ensure_ascii=False, indent=2))
        return
    _print_outcome(prog, outcome)


def _print_outcome(prog: Program, outcome) -> None:
    out.print(
        f"[bold]{prog.name}[/bold]  event {outcome.event.id} ({outcome.event.type}) for {outcome.context.member.id}"
    )
    table = Table(show_lines=False)
    table.add_column("rule")
    table.add_column("effect")
    table.add_column("amount", justify="right")
    table.add_column("explanation", overflow="fold")
    for effect in outcome.effects:
        amount = ""
        if effect.points is not None:
            amount = f"{_num(effect.points)} {effect.balance}"
        elif effect.factor is not None:
            amount = f"x{_num(effect.factor)}"
        elif effect.coupon:
            amount = effect.coupon
        elif effect.tier:
            amount = effect.tier
        table.add_row(effect.rule or "-", effect.type, amount, effect.explanation)
    if outcome.effects:
        out.print(table)
    else:
        out.print("no rule applied")
    totals = ", ".join(f"{_num(v)} {b}" for b, v in outcome.totals.items()) or "nothing"
    out.print(f"total: {totals}")
    if outcome.coupons:
        out.print("coupons: " + ", ".join(outcome.coupons))
    for hint in outcome.hints:
        out.print(f"hint: {hint}", markup=False)


def _num(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else str(value)


# ------------------------------------------------------------------ schema


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the names as JSON.")
def schema(as_json: bool) -> None:
    """List the names rule files can use: event fields, functions, channels, scores."""
    from .language.schema import default_schema

    s = default_schema()
    data = {
        "event_types": s.event_types,
        "item_fields": s.item_fields,
        "member_fields": {**s.member_fields, **s.member_context_fields},
        "statistics": s.stats,
        "functions": {name: fn.doc for name, fn in s.functions.items()},
        "channels": {name: c.doc for name, c in s.channels.items()},
        "scores": {name: f"{sc.type}: {sc.doc}" for name, sc in s.scores.items()},
        "reward_types": {
            f"{name}({', '.join(f'{a}: {t}' for a, t in r.params.items())})": f"{r.doc} [{r.provider}]"
            for name, r in s.reward_types.items()
            if not r.keyword
        },
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for section, entries in data.items():
        out.print(f"[bold]{section}[/bold]")
        if not entries:
            out.print("  (none installed)")
        for key, value in entries.items():
            shown = value if isinstance(value, str) else ", ".join(f"{k}: {v}" for k, v in value.items())
            out.print(f"  {key}: {shown}", markup=False)


from . import (  # noqa: E402 - registers the commands on `main`
    cli_plugins,  # noqa: F401 - plugins
    cli_simulate,  # noqa: F401 - generate-history, simulate
    cli_state,  # noqa: F401 - the database commands
    cli_workbench,  # noqa: F401 - test, explain, describe, shadow-report
)

if __name__ == "__main__":  # pragma: no cover - python -m loyalty_engine.cli: use the module the commands live on
    from loyalty_engine.cli import main as registered

    registered()
