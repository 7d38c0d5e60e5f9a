"""``loyalty`` commands of the analyst's workbench: test, explain, describe, shadow-report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli import EXIT_RULES, _load, err, main, out
from .errors import RuleFileError
from .program import load_program

# ------------------------------------------------------------------ test


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--seed", type=int, help="Seed for the invariant checks (default: a new one each run, printed).")
@click.option("--max-examples", type=int, help="Generated purchases per invariant (overrides the test file).")
@click.option("--no-invariants", is_flag=True, help="Run the examples only.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for CI tools).")
def test_cmd(
    paths: tuple[Path, ...], seed: int | None, max_examples: int | None, no_invariants: bool, as_json: bool
) -> None:
    """Run the rule tests in PROGRAM.test.yaml files (default: under the current directory).

    Prints PASS or FAIL for each example, with expected and actual values for a
    failure, then the rule coverage (rules and triggers no example fired) and
    the invariants checked against generated purchases. Exits 1 on any failure.
    """
    from .workbench.runner import Coverage, failure_dict, render_failure, run_example
    from .workbench.testfile import TestFileError, discover, read_test_file

    def say(line: str) -> None:
        if not as_json:
            out.print(line, markup=False)

    def complain(line: str) -> None:
        if not as_json:
            err.print(line, markup=False)

    files = discover(list(paths) or [Path(".")])
    if not files:
        err.print("no test files found (they are named PROGRAM.test.yaml, beside PROGRAM.loy)", markup=False)
        sys.exit(EXIT_RULES)
    failed = 0
    passed = 0
    results: list[dict] = []
    coverage: dict[str, Coverage] = {}

    def report(entry: dict, pass_line: str, fail_line: str, details) -> None:
        """Record one example's or invariant's result and print its line (and, on failure, the details)."""
        nonlocal passed, failed
        results.append(entry)
        if entry["passed"]:
            passed += 1
            say(pass_line)
            return
        failed += 1
        say(fail_line)
        for line in details:
            say(line)

    for path in files:
        try:
            test = read_test_file(path)
        except TestFileError as exc:
            for diag in exc.diagnostics:
                complain(diag.render())
            complain(f"{path}: cannot be run")
            results.append(
                {"file": str(path), "kind": "file", "passed": False, "errors": [d.to_dict() for d in exc.diagnostics]}
            )
            failed += 1
            continue
        try:
            program = load_program(test.program)
        except RuleFileError as exc:
            for diag in exc.diagnostics:
                complain(diag.render())
            complain(f"{path}: its program {test.program} does not load")
            results.append(
                {
                    "file": str(path),
                    "kind": "program",
                    "passed": False,
                    "errors": [d.to_dict() for d in exc.diagnostics],
                }
            )
            failed += 1
            continue
        cov = coverage.setdefault(program.version, Coverage(program))
        for example in test.examples:
            result = run_example(program, test, example)
            cov.fired |= result.fired
            cov.examples += 1
            head = f"{path}:{example.line}: {example.name}"
            entry = {
                "file": str(path),
                "line": example.line,
                "kind": "example",
                "name": example.name,
                "passed": result.passed,
                "failures": [failure_dict(f) for f in result.failures],
            }
            details = (line for f in result.failures for line in render_failure(f, str(path)))
            report(entry, f"PASS {head}", f"FAIL {head}", details)
        if test.invariants is not None and test.invariants.any and not no_invariants:
            from .workbench.invariants import check_invariants

            for inv in check_invariants(program, test.invariants, seed=seed, max_examples=max_examples):
                where = f"{path}:{inv.line}: invariant {inv.name}"
                entry = {
                    "file": str(path),
                    "line": inv.line,
                    "kind": "invariant",
                    "name": inv.name,
                    "passed": inv.ok,
                    "seed": inv.seed,
                    "examples": inv.examples,
                    "report": inv.report,
                }
                ok_line = f"PASS {where} ({inv.examples} generated purchases, seed {inv.seed})"
                report(entry, ok_line, f"FAIL {where} (seed {inv.seed})", (f"  {line}" for line in inv.report))
    covered = []
    for cov in coverage.values():
        if not cov.examples:
            continue
        say(f"coverage of {cov.program.name}: {cov.summary()}")
        never = cov.never_fired()
        for kind, name, where in never:
            say(f"  never fired: {kind} '{name}' ({where})")
        covered.append(
            {
                "program": cov.program.name,
                "summary": cov.summary(),
                "never_fired": [{"kind": k, "name": n, "location": w} for k, n, w in never],
            }
        )
    say(f"{passed} passed, {failed} failed")
    if as_json:
        report = {"passed": passed, "failed": failed, "results": results, "coverage": covered}
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=_json_default))
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ explain


@main.command("explain")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_file", type=click.Path(path_type=Path), help="Event JSON file.")
@click.option(
    "--triggers", is_flag=True, help="Explain the daily trigger run for --member at --as-of instead of an event."
)
@click.option(
    "--member", "member_file", type=click.Path(path_type=Path), help="Member JSON file (with optional context)."
)
@click.option("--as-of", "as_of", help="Evaluate as if at this ISO 8601 time (with offset).")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def explain_cmd(
    program: Path, event_file: Path | None, triggers: bool, member_file: Path | None, as_of: str | None, as_json: bool
) -> None:
    """Show, rule by rule in evaluation order, whether each rule applied and why (or why not).

    A rule that did not apply shows the condition that failed with the actual
    values, or the date window, limit, budget or group that stopped it; the
    points show how they were computed (rates, multipliers, rounding, caps).
    With --triggers, the same for the retention triggers of one member on one
    day. Nothing is stored. A malformed event or member exits 2 naming the field.
    """
    from .cli import _input_error, evaluation_inputs

    if triggers == (event_file is not None):
        _input_error("give --event EVENT.json, or --triggers with --member and --as-of")
    if triggers:
        trace = _trigger_trace(program, member_file, as_of)
    else:
        prog, event, context, when = evaluation_inputs(program, event_file, member_file, as_of)
        trace = prog.explain(event, context, when)
    if as_json:
        click.echo(json.dumps(trace.to_dict(), ensure_ascii=False, indent=2))
        return
    out.print(trace.render(), markup=False)


def _trigger_trace(program: Path, member_file: Path | None, as_of: str | None):
    from .cli import _input_error, _read_json, as_of_option
    from .errors import InputError
    from .wire import structure_context

    if member_file is None or not as_of:
        _input_error("--triggers needs --member MEMBER.json and --as-of ISO-TIME")
    prog = _load(program)
    member_data = _read_json(member_file, "member")
    try:
        when = as_of_option(as_of)
        context = structure_context(member_data, prog.checked.schema.member_attributes)
        return prog.explain_triggers(context, when)
    except InputError as exc:
        _input_error(str(exc))


# ------------------------------------------------------------------ describe


@main.command("describe")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True, help="Language of the text.")
@click.option("--cashier", is_flag=True, help="Write the one-page cashier sheet instead of the customer terms.")
def describe_cmd(program: Path, lang: str, cashier: bool) -> None:
    """Write PROGRAM as terms a customer reads (Markdown), or as a one-page cashier sheet.

    Rates, thresholds, multipliers, coupons, limits, campaign dates and expiry
    all come from the checked program, so the text cannot drift from the rules.
    """
    from .workbench.describe import cashier_sheet, describe

    prog = _load(program)
    text = cashier_sheet(prog, lang) if cashier else describe(prog, lang)
    click.echo(text, nl=False)


# ------------------------------------------------------------------ shadow-report


@main.command("shadow-report")
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default="loyalty.db", show_default=True, help="Database."
)
@click.option("--candidate", help="Only this candidate program version (a prefix is enough).")
@click.option("--top", default=5, show_default=True, help="How many members and rules to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def shadow_report(db: Path, candidate: str | None, top: int, as_json: bool) -> None:
    """Summarise where a candidate program run in shadow mode differed from the live one.

    Counts of events compared, differing and failed; the points delta; coupons,
    tiers and messages that differ; the members and rules with the largest
    differences. Record a shadow run with 'loyalty run PROGRAM EVENTS --shadow CANDIDATE'
    or Engine(..., shadow=candidate).
    """
    from .service.shadow import report
    from .store.sqlite import SQLiteStore

    if not db.exists():
        from .cli import _input_error

        _input_error(f"database '{db}' does not exist")
    store = SQLiteStore(db)
    try:
        reports = report(store, candidate, top)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(reports, ensure_ascii=False, indent=2, default=_json_default))
        return
    if not reports:
        out.print("no shadow runs recorded in this database", markup=False)
        return
    for r in reports:
        _print_shadow(r)


def _json_default(value):
    from decimal import Decimal

    from .engine.effects import json_number

    if isinstance(value, Decimal):
        return json_number(value)
    raise TypeError(type(value).__name__)


def _print_shadow(r: dict) -> None:
    from .engine.outcome import fmt

    def signed(v) -> str:
        return ("+" if v > 0 else "") + fmt(v)

    c = r["counts"]
    out.print(
        f"candidate {r['candidate_name']} ({r['candidate'][:12]}) beside live {', '.join(v[:12] for v in r['live'])}"
    )
    out.print(
        f"  events compared: {c['events']}: {c['same']} the same, {c['differs']} different, {c['error']} failed in the candidate",
        markup=False,
    )
    p = r["points"]
    out.print(f"  points: live {fmt(p['live'])}, candidate {fmt(p['candidate'])} ({signed(p['delta'])})", markup=False)
    for b, v in r["balances"].items():
        out.print(f"  {b}: live {fmt(v['live'])}, candidate {fmt(v['candidate'])} ({signed(v['delta'])})", markup=False)
    if r["coupons"]:
        out.print("  coupons issued, on the events where they differ:", markup=False)
    for code, v in r["coupons"].items():
        out.print(f"    {code}: live {v['live']}, candidate {v['candidate']}", markup=False)
    if r["tier_differences"]:
        out.print(f"  tier reached differs on {r['tier_differences']} events", markup=False)
    if r["message_differences"]:
        out.print(f"  messages differ on {r['message_differences']} events", markup=False)
    if r.get("reward_differences"):
        out.print(f"  plugin rewards differ on {r['reward_differences']} events", markup=False)
    if r["top_members"]:
        out.print("  members with the largest points difference:", markup=False)
        for m in r["top_members"]:
            out.print(f"    {m['member']}: {signed(m['delta'])}", markup=False)
    if r["rules"]:
        out.print("  per rule (points on the events where they differ):", markup=False)
        for rule in r["rules"]:
            text = f"    {rule['rule']}: "
            if rule["live"] or rule["candidate"]:
                text += (
                    f"live {fmt(rule['live'])}, candidate {fmt(rule['candidate'])} ({signed(rule['delta'])}) points, "
                )
            text += f"differs on {rule['events']} event{'s' if rule['events'] != 1 else ''}"
            if rule["applied_live"] != rule["applied_candidate"]:
                text += f" (applied {rule['applied_live']} times live, {rule['applied_candidate']} in the candidate)"
            out.print(text, markup=False)
    for e in r["errors"]:
        out.print(f"  candidate failed on {e['event']}: {e['error']}", markup=False)
