"""Conformance suite for the rules language: one test per YAML case in dsl/conformance/.

Every case is a small, reviewable file (see dsl/conformance/README.md) with a
``description``, a ``program`` (or ``program_file``), optionally a ``member``,
and one kind of expectation:

* ``event`` + ``expect`` (or ``events``: a list of ``{event, as_of, expect}``);
* ``triggers``: ``{as_of, expect}``, or a list of them (runs at several dates);
* ``expect_errors`` (with optional ``expect_hints`` and ``expect_warnings``);
* ``expect_warnings`` alone, for a program that loads but is warned about;
* ``event`` + ``expect_input_error``.

A case may say ``xfail: "reason"`` when the engine is believed wrong; it then
runs as a strict expected failure, so a fixed engine turns it red until the
marker is removed. Nothing is skipped.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
import yaml

from loyalty_engine.errors import InputError, RuleFileError
from loyalty_engine.plugins import core_schema
from loyalty_engine.program import check_program, load_program
from loyalty_engine.wire import structure_context, structure_event
from loyalty_engine.workbench.testfile import jsonish

CORE = core_schema()  # the built-ins only: cases must not depend on which plugins are installed

ROOT = Path(__file__).resolve().parent.parent / "dsl" / "conformance"
TOP_KEYS = {
    "description",
    "program",
    "program_file",
    "member",
    "event",
    "as_of",
    "expect",
    "events",
    "triggers",
    "expect_errors",
    "expect_hints",
    "expect_warnings",
    "expect_input_error",
    "xfail",
}
EXPECT_KEYS = {
    "points",
    "totals",
    "coupons",
    "effects",
    "explanations_contain",
    "hints",
    "hints_contain",
}
DEFAULT_MEMBER = {"id": "m-1"}


def _case_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.yaml") if "includes" not in p.relative_to(ROOT).parts)


def _params():
    out = []
    for path in _case_files():
        rel = path.relative_to(ROOT).as_posix()
        marks = []
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            data = None  # reported by the test itself
        if isinstance(data, dict) and data.get("xfail"):
            marks.append(pytest.mark.xfail(reason=str(data["xfail"]), strict=True))
        out.append(pytest.param(path, id=rel, marks=marks))
    return out


# ------------------------------------------------------------------ helpers


def as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        result = value
    else:
        result = dt.datetime.fromisoformat(str(value))
    assert result.utcoffset() is not None, f"as_of {value!r} must carry a timezone offset"
    return result


def _num(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def same(actual: Any, expected: Any) -> bool:
    """Equality where numbers compare by value whether written 3, 3.0 or "3.00"."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(actual) == set(expected) and all(same(actual[k], expected[k]) for k in expected)
    if isinstance(expected, list) and isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    a, e = _num(actual), _num(expected)
    if a is not None and e is not None:
        return a == e
    if isinstance(expected, (dt.date, dt.datetime)):
        expected = expected.isoformat()
    return actual == expected


def _check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    assert not unknown, f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(allowed)})"


def _program_source(case: dict, path: Path) -> tuple[str, str | None]:
    if ("program" in case) == ("program_file" in case):
        raise AssertionError("a case gives exactly one of 'program' and 'program_file'")
    if "program_file" in case:
        return str(path.parent / case["program_file"]), None
    return f"{path.stem}.loy", case["program"]


def _first_lines(diagnostics) -> list[str]:
    return [d.render().splitlines()[0] for d in diagnostics]


def _match_all(expected: list[str], actual: list[str], what: str, all_rendered: str) -> None:
    """Each expected substring matches a different actual line; counts are equal."""
    assert len(actual) == len(expected), f"expected {len(expected)} {what}, got {len(actual)}:\n{all_rendered}"
    free = list(actual)
    for want in expected:
        hit = next((line for line in free if want in line), None)
        assert hit is not None, f"no {what[:-1]} matches {want!r}; {what}:\n" + "\n".join(actual)
        free.remove(hit)


# ------------------------------------------------------------------ the checks


def check_outcome(outcome, expect: dict, where: str) -> None:
    _check_keys(expect, EXPECT_KEYS, where)
    got = outcome.to_dict()
    shown = yaml.safe_dump(
        {k: got[k] for k in ("points", "totals", "coupons", "effects", "hints")}, allow_unicode=True, sort_keys=False
    )
    if "points" in expect:
        assert got["points"] == expect["points"], f"{where}: points {got['points']} != {expect['points']}\n{shown}"
    if "totals" in expect:
        assert same(got["totals"], expect["totals"]), f"{where}: totals {got['totals']} != {expect['totals']}\n{shown}"
    if "coupons" in expect:
        assert got["coupons"] == list(expect["coupons"]), f"{where}: coupons differ\n{shown}"
    if "effects" in expect:
        wanted = expect["effects"]
        effects = got["effects"]
        assert len(effects) == len(wanted), f"{where}: {len(effects)} effects, expected {len(wanted)}\n{shown}"
        for i, (effect, want) in enumerate(zip(effects, wanted)):
            for key, value in want.items():
                if key == "explanation_contains":
                    assert value in effect["explanation"], f"{where}: effect {i} explanation lacks {value!r}\n{shown}"
                    continue
                assert key in effect, f"{where}: effect {i} has no {key!r}\n{shown}"
                assert same(effect[key], value), (
                    f"{where}: effect {i} {key} = {effect[key]!r}, expected {value!r}\n{shown}"
                )
    for text in expect.get("explanations_contain", []):
        assert any(text in e for e in got["explanations"]), f"{where}: no explanation contains {text!r}:\n" + "\n".join(
            got["explanations"]
        )
    if "hints" in expect:
        assert got["hints"] == list(expect["hints"]), f"{where}: hints {got['hints']} != {expect['hints']}"
    for text in expect.get("hints_contain", []):
        assert any(text in h for h in got["hints"]), f"{where}: no hint contains {text!r}: {got['hints']}"


def run_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict), "a case file is a YAML mapping"
    _check_keys(case, TOP_KEYS, "case")
    assert str(case.get("description", "")).strip(), "every case has a description"
    name, text = _program_source(case, path)

    modes = [k for k in ("event", "events", "triggers", "expect_errors") if k in case]
    if not modes:
        assert "expect_warnings" in case, "a case needs event(s), triggers, expect_errors or expect_warnings"
    assert len(modes) <= 1, f"a case has one kind of expectation, not {modes}"

    # ---------------------------------------------------------- rule-file diagnostics
    result = check_program(name, text=text, schema=CORE)
    rendered = "\n".join(d.render() for d in result.diagnostics)
    if "expect_errors" in case:
        _check_keys(
            case,
            {"description", "program", "program_file", "expect_errors", "expect_hints", "expect_warnings", "xfail"},
            "error case",
        )
        _match_all(list(case["expect_errors"]), _first_lines(result.errors), "errors", rendered)
        hints = [d.hint or "" for d in result.diagnostics]
        for want in case.get("expect_hints", []):
            assert any(want in h for h in hints), f"no hint contains {want!r}:\n{rendered}"
        if "expect_warnings" in case:
            _match_all(list(case["expect_warnings"]), _first_lines(result.warnings), "warnings", rendered)
        with pytest.raises(RuleFileError) as info:
            load_program(name, text=text, schema=CORE)
        assert len(info.value.errors) == len(case["expect_errors"])
        return

    assert not result.errors, f"the program should load cleanly:\n{rendered}"
    if "expect_warnings" in case:
        _match_all(list(case["expect_warnings"]), _first_lines(result.warnings), "warnings", rendered)
    for want in case.get("expect_hints", []):
        assert any(want in (d.hint or "") for d in result.diagnostics), f"no hint contains {want!r}:\n{rendered}"
    program = load_program(name, text=text, schema=CORE)
    member_data = jsonish(case.get("member", DEFAULT_MEMBER))

    if "expect_input_error" in case:
        assert "event" in case and "expect" not in case, "expect_input_error goes with one event and no expect"
        with pytest.raises(InputError) as info:
            ctx = structure_context(member_data)
            event = structure_event(jsonish(case["event"]), program.event_types)
            program.evaluate(event, ctx, as_of=as_datetime(case.get("as_of")))
        assert case["expect_input_error"] in str(info.value), f"InputError was: {info.value}"
        return

    if "triggers" in case:
        specs = case["triggers"] if isinstance(case["triggers"], list) else [case["triggers"]]
        assert specs, "'triggers' holds at least one run"
        ctx = structure_context(member_data)
        for i, spec in enumerate(specs):
            _check_keys(spec, {"as_of", "expect", "note"}, f"triggers[{i}]")
            outcome = program.run_triggers(ctx, as_datetime(spec["as_of"]))
            check_outcome(outcome, spec["expect"], f"triggers[{i}] at {spec['as_of']}")
        return

    if "event" in case:
        assert "expect" in case, "an event case needs 'expect'"
        runs = [{"event": case["event"], "as_of": case.get("as_of"), "expect": case["expect"]}]
    elif "events" in case:
        runs = case["events"]
        assert runs, "'events' lists at least one evaluation"
    else:
        return  # a warnings-only case, checked above
    ctx = structure_context(member_data)
    for i, run in enumerate(runs):
        _check_keys(run, {"event", "as_of", "expect", "note"}, f"events[{i}]")
        event = structure_event(jsonish(run["event"]), program.event_types)
        outcome = program.evaluate(event, ctx, as_of=as_datetime(run.get("as_of")))
        check_outcome(outcome, run["expect"], f"events[{i}]" if "events" in case else "event")


@pytest.mark.parametrize("path", _params())
def test_conformance(path: Path) -> None:
    run_case(path)


def test_suite_is_large_enough() -> None:
    assert len(_case_files()) >= 70
