"""Examples in docs/ run in the tests, so they cannot rot.

Three kinds of examples are checked:

- ```loy blocks of docs/language.md must check clean;
- ``>>>`` examples of the guides run as doctests;
- ```console blocks of the guides run their ``$ loyalty ...`` commands through
  click's CliRunner in a scratch folder, in order, and every output line the
  guide shows must appear in the command's output, in the same order (a ``...``
  inside a line matches any text; a line that is only ``...`` is a visual gap).
  A command must exit 0 unless its line says ``# exit status N``.

A guide can ship the files its examples use: a fenced block whose info string
has ``title="NAME"`` (```loy title="bakery.loy") is written to the scratch
folder before its examples run. ``<!-- clock: ISO-TIME -->`` fixes the clock the
command line reads (redeem, member, import-members, deliver use "now").

docs/plugins.md runs in tests/test_plugin_guide.py instead: it installs a
plugin, so its commands run in subprocesses.
"""

import datetime as dt
import doctest
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from loyalty_engine import cli, cli_state
from loyalty_engine.program import check_program
from loyalty_engine.service import engine as engine_module

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "language.md"
BLOCK = re.compile(r"```loy\n(.*?)```", re.S)
TITLED = re.compile(r'^```[\w-]*[ \t]+title="([^"]+)"[ \t]*\n(.*?)^```', re.S | re.M)
CONSOLE = re.compile(r"^```console[ \t]*\n(.*?)^```", re.S | re.M)
CLOCK = re.compile(r"<!--\s*clock:\s*(\S+)\s*-->")
EXIT_STATUS = re.compile(r"#.*\bexit status (\d+)")

PRELUDE_HEADER = (
    'program "Doc" { currency CNY  timezone "Asia/Shanghai"  balance stamps  balance cashback money }\n'
    "coupon BIG10 { discount 10%  valid 30 days }\n"
)
PRELUDE_TIERS = (
    "tiers by spend over last 12 months { member from 0  silver from 1000 earn x1.25  gold from 5000 earn x1.5 }\n"
)
PRELUDE_GROUP = 'group "Welcome" pick best\n'

# Guides with doctests, and the folder each runs in ("files": a scratch folder with the guide's files).
GUIDES = {"embedding.md": "root", "store.md": "files", "workbench.md": "files", "simulate.md": "files"}
CONSOLE_GUIDES = ["store.md", "workbench.md", "simulate.md"]


def language_blocks():
    text = LANGUAGE.read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        line = text[: match.start()].count("\n") + 2
        yield pytest.param(match.group(1), id=f"language.md:{line}")


def wrap(block: str) -> str:
    if 'program "' in block:
        return block
    prelude = PRELUDE_HEADER
    if not re.search(r"^\s*tiers\b", block, re.M):
        prelude += PRELUDE_TIERS
    if 'group "Welcome" pick' not in block:
        prelude += PRELUDE_GROUP
    return prelude + block


@pytest.mark.parametrize("block", list(language_blocks()))
def test_language_reference_examples_check_clean(block):
    result = check_program("doc.loy", text=wrap(block))
    assert not result.errors, "\n".join(d.render() for d in result.errors)


def test_language_reference_has_examples():
    assert len(list(language_blocks())) >= 30


# ------------------------------------------------------------------ guides: files, doctests, console blocks


def write_guide_files(text: str, folder: Path) -> list[str]:
    names = []
    for match in TITLED.finditer(text):
        name, body = match.group(1), match.group(2)
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
        names.append(name)
    return names


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_guides_run_as_doctests(name, monkeypatch, tmp_path):
    path = DOCS / name
    if GUIDES[name] == "files":
        write_guide_files(path.read_text(encoding="utf-8"), tmp_path)
        monkeypatch.chdir(tmp_path)
    else:
        monkeypatch.chdir(ROOT)
    failures, tried = doctest.testfile(
        str(path), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert tried > 0 and failures == 0


def console_examples(text: str):
    """(line number, command line, expected output lines) for every ``$`` command in ```console blocks."""
    for block in CONSOLE.finditer(text):
        first = text[: block.start(1)].count("\n") + 1
        command = None
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                if command is not None:
                    yield command
                command = (first + offset, line[2:], [])
            elif command is not None:
                command[2].append(line)
            elif line.strip():
                raise AssertionError(f"line {first + offset}: output before any '$ ' command")
        if command is not None:
            yield command


def _normal(line: str) -> str:
    return " ".join(line.split())


def _pattern(expected: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in _normal(expected).split("...")))


def missing_lines(expected: list[str], output: str) -> list[str]:
    """Expected lines that are not found, in order, among the output lines."""
    actual = [_normal(line) for line in output.splitlines()]
    position = 0
    missing = []
    for line in expected:
        if not line.strip() or line.strip() == "...":
            continue
        pattern = _pattern(line)
        for index in range(position, len(actual)):
            if pattern.fullmatch(actual[index]):
                position = index + 1
                break
        else:
            missing.append(line)
    return missing


def fixed_clock_engine(now: dt.datetime):
    class FixedClockEngine(engine_module.Engine):
        def __init__(self, program, store, clock=None, **options):
            if clock is None or clock is engine_module.utc_now:
                clock = lambda: now  # noqa: E731
            super().__init__(program, store, clock, **options)

    return FixedClockEngine


def test_console_parser_and_matcher():
    text = "```console\n$ loyalty a   # exit status 2\nfirst\n...\nlast ... end\n$ loyalty b\n```\n"
    (line, command, expected), (_, second, nothing) = console_examples(text)
    assert (line, second, nothing) == (2, "loyalty b", [])
    assert EXIT_STATUS.search(command).group(1) == "2"
    assert missing_lines(expected, "first\nnoise\nlast  part of the end\n") == []
    assert missing_lines(expected, "last x end\nfirst\n") == ["last ... end"]


@pytest.mark.parametrize("name", CONSOLE_GUIDES)
def test_guide_console_examples(name, monkeypatch, tmp_path):
    text = (DOCS / name).read_text(encoding="utf-8")
    write_guide_files(text, tmp_path)
    monkeypatch.chdir(tmp_path)
    clock = CLOCK.search(text)
    assert clock, f"{name} has console examples but no <!-- clock: ... --> marker"
    monkeypatch.setattr(cli_state, "Engine", fixed_clock_engine(dt.datetime.fromisoformat(clock.group(1))))
    for console in (cli.out, cli.err):  # the width a pipe gets, even when pytest runs in a terminal
        monkeypatch.setattr(console, "width", 150)
    examples = list(console_examples(text))
    assert examples, f"{name} has no console examples"
    for line, command, expected in examples:
        args = shlex.split(command, comments=True)
        assert args[0] == "loyalty", f"{name}:{line}: only 'loyalty' commands can run in the docs"
        status = EXIT_STATUS.search(command)
        result = CliRunner().invoke(cli.main, args[1:])
        where = f"{name}:{line}: $ {command}\n--- output ---\n{result.output}"
        assert result.exit_code == (int(status.group(1)) if status else 0), where + f"\n{result.exception!r}"
        missing = missing_lines(expected, result.output)
        assert not missing, where + "--- not found (in order) ---\n" + "\n".join(missing)


DOTTED = re.compile(r"`(loyalty_engine(?:\.[A-Za-z_]\w*)+)`")


def test_every_dotted_name_the_docs_mention_exists():
    import importlib

    missing = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for name in sorted(set(DOTTED.findall(path.read_text(encoding="utf-8")))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                try:
                    for attribute in parts[cut:]:
                        found = getattr(found, attribute)
                except AttributeError:
                    missing.append(f"{path.name}: {name}")
                break
    assert missing == []
