"""Reading ``PROGRAM.test.yaml``: examples and invariants an analyst writes beside a rule file.

A test file is YAML::

    program: coffee_chain.loy          # optional: defaults to the file's name without .test.yaml
    member: {id: m-1, joined: 2025-01-10}   # optional: the starting member of every example
    examples:
      - name: two lattes earn base and coffee double
        member: {tier: silver}          # merged over the file's member
        events:
          - at: 2026-05-20T08:45:00+08:00
            items: [{sku: LATTE, category: coffee, quantity: 2, unit_price: "32.00"}]
            expect: {points: 160}
        expect: {balance: 160, tier: silver}
    invariants:
      max_points_per_purchase: 5000

Every problem (bad YAML, an unknown key, a value of the wrong kind) is a
:class:`TestFileError` whose diagnostics read ``file:line:col: error: ...`` with
the line and a hint, like rule-file errors.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from attrs import field, frozen

from ..errors import LoyaltyError
from ..language.diagnostics import Diagnostic, did_you_mean

SUFFIX = ".test.yaml"

TOP_KEYS = ("program", "description", "member", "shared", "examples", "invariants")  # shared: YAML anchors to reuse
EXAMPLE_KEYS = ("name", "note", "member", "event", "events", "expect")
MEMBER_KEYS = (
    "id",
    "name",
    "joined",
    "birthday",
    "email",
    "phone",
    "tier",
    "tier_since",
    "balances",
    "expires",
    "qualifying",
    "attributes",
)
EXPECT_KEYS = ("points", "earned", "balance", "available", "tier", "coupons", "messages", "rewards", "rules", "error")
STEP_KEYS = ("expect", "note")  # besides the event's own fields (checked by the wire format)
TRIGGER_STEP_KEYS = ("triggers", "expect", "note")
INVARIANT_KEYS = (
    "examples",
    "max_points_per_purchase",
    "full_refund_restores_member",
    "points_never_negative",
    "earning_monotone_in_amount",
)
DEFAULT_MEMBER_ID = "m-1"
SKIPPED = ("node_modules", "site-packages", "__pycache__")  # with hidden folders (.venv, .git): never searched


class TestFileError(LoyaltyError):
    """A test file that cannot be read. ``diagnostics`` lists every problem with its line."""

    __test__ = False  # not a pytest test class

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))


class Marked(dict):
    """A YAML mapping that remembers the line of itself and of each key."""

    line: int = 0
    column: int = 1
    key_lines: dict
    key_columns: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def column_of(self, key: str) -> int:
        return self.key_columns.get(key, 1)


class MarkedList(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode):
    data = Marked()
    data.line = node.start_mark.line + 1
    data.column = node.start_mark.column + 1
    data.key_lines = {}
    data.key_columns = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in data:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key '{key}' appears twice in this mapping", key_node.start_mark
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1
        data.key_columns[key] = key_node.start_mark.column + 1


def _sequence(loader: _Loader, node: yaml.SequenceNode):
    data = MarkedList()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _sequence)


# ------------------------------------------------------------------ the parsed file


@frozen
class Expect:
    values: dict[str, Any]
    line: int


@frozen
class Step:
    """One event (``data`` is its JSON), or one day of triggers (``triggers`` set)."""

    line: int
    data: dict[str, Any] | None = None
    triggers: dt.datetime | dt.date | None = None
    expect: Expect | None = None
    note: str | None = None

    def at(self, tz) -> dt.datetime:
        """When the step happens; a triggers day runs at the end of that day in ``tz``."""
        if isinstance(self.triggers, dt.datetime):
            return self.triggers
        if self.triggers is not None:
            return dt.datetime.combine(self.triggers, dt.time(23, 59), tz)
        return dt.datetime.fromisoformat(str(self.data["at"]).replace("Z", "+00:00"))


@frozen
class Example:
    name: str
    line: int
    member: dict[str, Any]
    steps: tuple[Step, ...]
    expect: Expect | None = None


@frozen
class Invariants:
    line: int
    examples: int = 100
    max_points_per_purchase: int | None = None
    full_refund_restores_member: bool = False
    points_never_negative: bool = False
    earning_monotone_in_amount: bool = False

    @property
    def any(self) -> bool:
        return (
            self.max_points_per_purchase is not None
            or self.full_refund_restores_member
            or self.points_never_negative
            or self.earning_monotone_in_amount
        )


@frozen
class TestFile:
    __test__ = False

    path: Path
    program: Path
    examples: tuple[Example, ...]
    invariants: Invariants | None = None
    lines: list[str] = field(factory=list, eq=False, repr=False)

    def source_line(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""


def jsonish(value: Any) -> Any:
    """YAML values as a JSON decoder would give them: dates and times as ISO text, floats still numbers.

    The wire format reads a float through its ``repr`` (12.5 -> Decimal("12.5")).
    """
    if isinstance(value, dict):
        return {str(k): jsonish(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonish(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


# ------------------------------------------------------------------ reading


class _Reader:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[Diagnostic] = []

    def error(self, line: int, message: str, hint: str | None = None, column: int = 1) -> None:
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if column == 1 and source:
            column = len(source) - len(source.lstrip()) + 1
        self.problems.append(Diagnostic("error", message, str(self.path), line, column, source, hint))

    def keys(self, mapping: Marked, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f"{what} keys are: {', '.join(allowed)}"
                self.error(mapping.line_of(key), f"unknown key '{key}' in {what}", hint, mapping.column_of(key))

    def mapping(self, value: Any, line: int, what: str) -> Marked | None:
        if isinstance(value, Marked):
            return value
        self.error(line, f"{what} must be a mapping (key: value lines), not {_kind(value)}")
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


def test_file_for(program: Path) -> Path:
    """``coffee.loy`` -> ``coffee.test.yaml``."""
    return program.with_name(program.name.removesuffix(".loy") + SUFFIX)


def program_for(test_file: Path) -> Path:
    """``coffee.test.yaml`` -> ``coffee.loy``."""
    return test_file.with_name(test_file.name.removesuffix(SUFFIX) + ".loy")


def read_test_file(path: str | Path, text: str | None = None) -> TestFile:
    """Parse and validate a test file; raises :class:`TestFileError` listing every problem."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            program = program_for(path)
            hint = (
                f"write the examples for {program.name} in {path.name}, beside it (see docs/workbench.md)"
                if program.exists()
                else None
            )
            raise TestFileError([Diagnostic("error", "no such test file", str(path), 1, 1, hint=hint)]) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise TestFileError([Diagnostic("error", f"cannot read the test file: {exc}", str(path), 1, 1)]) from exc
    reader = _Reader(path, text)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = mark.column + 1 if mark else 1
        problem = exc.problem or str(exc)
        hint = "check the indentation and that every 'key: value' has a space after the colon"
        context = exc.context or ""
        if "twice" in problem:
            hint = "remove one of them, or give the second its own entry in a list"
        elif "'\\t'" in problem or "tab" in problem.lower():
            hint = "indent with spaces, not tabs"
        elif "mapping values are not allowed" in problem:
            hint = "a text that contains ': ' must be in quotes: name: \"Weekend: 30 points\""
        elif "flow mapping" in context or "flow sequence" in context:
            opened = exc.context_mark.line + 1 if exc.context_mark else line
            bracket = "{" if "mapping" in context else "["
            closing = "}" if bracket == "{" else "]"
            hint = f"the '{bracket}' on line {opened} is not closed: end it with '{closing}' on the same line"
        reader.error(line, f"not valid YAML: {problem}", hint, column)
        raise TestFileError(reader.problems) from None
    if not isinstance(data, Marked):
        reader.error(1, "a test file is a mapping with 'examples:' (and optionally 'invariants:')")
        raise TestFileError(reader.problems)
    reader.keys(data, TOP_KEYS, "the test file")
    program = data.get("program")
    if program is None:
        program_path = program_for(path)
    else:
        program_path = path.parent / str(program)
    if not program_path.exists():
        reader.error(
            data.line_of("program"),
            f"the program '{program_path}' does not exist",
            "name it with 'program: FILE.loy' (relative to this test file)",
        )
    base_member = {}
    if "member" in data:
        member = reader.mapping(data["member"], data.line_of("member"), "'member'")
        if member is not None:
            reader.keys(member, MEMBER_KEYS, "a member")
            base_member = dict(member)
    examples = []
    raw_examples = data.get("examples", [])
    if not isinstance(raw_examples, list):
        reader.error(data.line_of("examples"), "'examples' must be a list (each entry starts with '- ')")
        raw_examples = []
    for index, raw in enumerate(raw_examples):
        line = getattr(raw, "line", getattr(raw_examples, "line", 1))
        example = _example(reader, raw, index, line, base_member)
        if example is not None:
            examples.append(example)
    invariants = None
    if data.get("invariants") is not None:
        invariants = _invariants(reader, data["invariants"], data.line_of("invariants"))
    if not examples and invariants is None and not reader.problems:
        reader.error(1, "the test file has no examples and no invariants", "add 'examples:' with at least one example")
    if reader.problems:
        raise TestFileError(reader.problems)
    return TestFile(path, program_path, tuple(examples), invariants, reader.lines)


def _example(reader: _Reader, raw: Any, index: int, line: int, base_member: dict) -> Example | None:
    mapping = reader.mapping(raw, line, f"example {index + 1}")
    if mapping is None:
        return None
    reader.keys(mapping, EXAMPLE_KEYS, "an example")
    name = str(mapping.get("name") or f"example {index + 1}")
    member = dict(base_member)
    if "member" in mapping:
        own = reader.mapping(mapping["member"], mapping.line_of("member"), "'member'")
        if own is not None:
            reader.keys(own, MEMBER_KEYS, "a member")
            member.update(own)
    member.setdefault("id", DEFAULT_MEMBER_ID)
    member = jsonish(member)
    expect = _expect(reader, mapping.get("expect"), mapping.line_of("expect")) if "expect" in mapping else None
    if "event" in mapping and "events" in mapping:
        reader.error(mapping.line_of("events"), f"example '{name}' has both 'event:' and 'events:'", "keep one")
        return None
    if "event" not in mapping and "events" not in mapping:
        reader.error(
            mapping.line,
            f"example '{name}' has no event",
            "add 'event:' (one event) or 'events:' (a list of events and triggers days)",
        )
        return None
    raw_steps = [mapping["event"]] if "event" in mapping else mapping["events"]
    if not isinstance(raw_steps, list) or not raw_steps:
        reader.error(mapping.line_of("events"), "'events' must be a list with at least one event")
        return None
    steps = []
    for n, raw_step in enumerate(raw_steps):
        step_line = getattr(raw_step, "line", mapping.line_of("events"))
        step = _step(reader, raw_step, step_line, index, n, member["id"])
        if step is not None:
            steps.append(step)
    if expect is None and not any(s.expect for s in steps):
        reader.error(mapping.line, f"example '{name}' expects nothing", "add 'expect:' to the example or to an event")
    return Example(name, mapping.line, member, tuple(steps), expect)


def _step(reader: _Reader, raw: Any, line: int, example: int, n: int, member: str) -> Step | None:
    mapping = reader.mapping(raw, line, "an event")
    if mapping is None:
        return None
    expect = _expect(reader, mapping.get("expect"), mapping.line_of("expect")) if "expect" in mapping else None
    note = mapping.get("note")
    if "triggers" in mapping:
        reader.keys(mapping, TRIGGER_STEP_KEYS, "a triggers step")
        at = _moment(reader, mapping["triggers"], mapping.line_of("triggers"), "triggers", end_of_day=True)
        return Step(line, triggers=at, expect=expect, note=note) if at else None
    event = {k: v for k, v in mapping.items() if k not in STEP_KEYS}
    if "at" not in event:
        reader.error(line, "an event needs 'at:', a date and time with an offset (2026-05-20T08:45:00+08:00)")
        return None
    if _moment(reader, event["at"], mapping.line_of("at"), "at") is None:
        return None
    data = jsonish(event)
    data.setdefault("type", "purchase")
    data.setdefault("id", f"e{example + 1}-{n + 1}")
    data.setdefault("member", member)
    return Step(line, data=data, expect=expect, note=note)


def _moment(reader: _Reader, value: Any, line: int, key: str, end_of_day: bool = False):
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        if not end_of_day:
            reader.error(line, f"'{key}' needs a time with an offset, not only a date ({value.isoformat()})")
            return None
        return value  # a day: the runner runs it in the program's timezone
    else:
        try:
            when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            reader.error(line, f"'{key}': {value!r} is not a date and time", "write it as 2026-05-20T08:45:00+08:00")
            return None
    if when.utcoffset() is None:
        reader.error(line, f"'{key}': {value} has no timezone offset", "add the offset, e.g. +08:00")
        return None
    return when


def _expect(reader: _Reader, raw: Any, line: int) -> Expect | None:
    mapping = reader.mapping(raw, line, "'expect'")
    if mapping is None:
        return None
    reader.keys(mapping, EXPECT_KEYS, "'expect'")
    for key in ("coupons", "messages", "rewards", "rules"):
        if key in mapping and not isinstance(mapping[key], list):
            reader.error(mapping.line_of(key), f"'{key}' must be a list, e.g. {key}: [...]")
    if "error" in mapping and len(mapping) > 1:
        reader.error(mapping.line_of("error"), "'error' expects the event to be refused: nothing else can be expected")
    return Expect({k: jsonish(v) for k, v in mapping.items()}, line)


def _invariants(reader: _Reader, raw: Any, line: int) -> Invariants | None:
    mapping = reader.mapping(raw, line, "'invariants'")
    if mapping is None:
        return None
    reader.keys(mapping, INVARIANT_KEYS, "'invariants'")
    values: dict[str, Any] = {}
    for key in ("examples", "max_points_per_purchase"):
        if key in mapping:
            value = mapping[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                reader.error(mapping.line_of(key), f"'{key}' must be a whole number of at least 1 (got {value!r})")
            else:
                values[key] = value
    for key in ("full_refund_restores_member", "points_never_negative", "earning_monotone_in_amount"):
        if key in mapping:
            if not isinstance(mapping[key], bool):
                reader.error(mapping.line_of(key), f"'{key}' is true or false (got {mapping[key]!r})")
            else:
                values[key] = mapping[key]
    return Invariants(line, **values)


def discover(paths: list[Path]) -> list[Path]:
    """Test files among ``paths``: test files as given, a program (``*.loy``) by its test file beside it,
    directories searched for ``*.test.yaml``."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(
                sorted(
                    f
                    for f in p.rglob(f"*{SUFFIX}")
                    if not any(part.startswith(".") or part in SKIPPED for part in f.relative_to(p).parts[:-1])
                )
            )
        elif p.name.endswith(".loy"):
            found.append(test_file_for(p))
        else:
            found.append(p)
    return found
