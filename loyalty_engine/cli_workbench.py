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
def test_cmd(paths: tuple[Path, ...], seed: int | None, max_examples: int | None, no_invariants: bool) -> None:
    """Run the rule tests in PROGRAM.test.yaml files (default: under the current directory).

    Prints PASS or FAIL for each example, with expected and actual values for a
    failure, then the rule coverage (rules and triggers no example fired) and
    the invariants checked against generated purchases. Exits 1 on any failure.
    """
    from .workbench.runner import Coverage, render_failure, run_example
    from .workbench.testfile import TestFileError, discover, read_test_file

    files = discover(list(paths) or [Path(".")])
    if not files:
        err.print("no test files found (they are named PROGRAM.test.yaml, beside PROGRAM.loy)", markup=False)
        sys.exit(EXIT_RULES)
    failed = 0
    passed = 0
    coverage: dict[str, Coverage] = {}
    for path in files:
        try:
            test = read_test_file(path)
        except TestFileError as exc:
            for diag in exc.diagnostics:
                err.print(diag.render(), markup=False)
            err.print(f"{path}: cannot be run", markup=False)
            failed += 1
            continue
        try:
            program = load_program(test.program)
        except RuleFileError as exc:
            for diag in exc.diagnostics:
                err.print(diag.render(), markup=False)
            err.print(f"{path}: its program {test.program} does not load", markup=False)
            failed += 1
            continue
        cov = coverage.setdefault(program.version, Coverage(program))
        for example in test.examples:
            result = run_example(program, test, example)
            cov.fired |= result.fired
            head = f"{path}:{example.line}: {example.name}"
            if result.passed:
                passed += 1
                out.print(f"PASS {head}", markup=False)
            else:
                failed += 1
                out.print(f"FAIL {head}", markup=False)
                for failure in result.failures:
                    for line in render_failure(failure, str(path)):
                        out.print(line, markup=False)
        if test.invariants is not None and test.invariants.any and not no_invariants:
            from .workbench.invariants import check_invariants

            for inv in check_invariants(program, test.invariants, seed=seed, max_examples=max_examples):
                where = f"{path}:{inv.line}: invariant {inv.name}"
                if inv.ok:
                    passed += 1
                    out.print(f"PASS {where} ({inv.examples} generated purchases, seed {inv.seed})", markup=False)
                else:
                    failed += 1
                    out.print(f"FAIL {where} (seed {inv.seed})", markup=False)
                    for line in inv.report:
                        out.print(f"  {line}", markup=False)
    for cov in coverage.values():
        out.print(f"coverage of {cov.program.name}: {cov.summary()}", markup=False)
        for kind, name, where in cov.never_fired():
            out.print(f"  never fired: {kind} '{name}' ({where})", markup=False)
    summary = f"{passed} passed, {failed} failed"
    out.print(summary, markup=False)
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ explain


@main.command("explain")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_file", required=True, type=click.Path(path_type=Path), help="Event JSON file.")
@click.option(
    "--member", "member_file", type=click.Path(path_type=Path), help="Member JSON file (with optional context)."
)
@click.option("--as-of", "as_of", help="Evaluate as if at this ISO 8601 time (with offset).")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def explain_cmd(program: Path, event_file: Path, member_file: Path | None, as_of: str | None, as_json: bool) -> None:
    """Show, rule by rule in evaluation order, whether each rule applied and why (or why not).

    A rule that did not apply shows the condition that failed with the actual
    values, or the date window, limit, budget or group that stopped it; the
    points show how they were computed (rates, multipliers, rounding, caps).
    Nothing is stored. A malformed event or member exits 2 naming the field.
    """
    from .cli import evaluation_inputs

    prog, event, context, when = evaluation_inputs(program, event_file, member_file, as_of)
    trace = prog.explain(event, context, when)
    if as_json:
        click.echo(json.dumps(trace.to_dict(), ensure_ascii=False, indent=2))
        return
    out.print(trace.render(), markup=False)


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
