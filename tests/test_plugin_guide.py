"""docs/plugins.md runs, so it cannot rot; and every hook has its section and its test.

The guide's titled blocks (```python title="...") are written to a scratch
folder. ``$ pip install ./DIR`` in a console block installs DIR the way
importlib.metadata sees an installed package: a ``NAME-VERSION.dist-info``
folder (METADATA and entry_points.txt, made from DIR/pyproject.toml) on a
folder put on PYTHONPATH, with DIR itself on PYTHONPATH for the code; so the
real ``loyalty_engine`` entry-point group finds it, nothing is written to the
virtual environment, and the scratch folder goes away with the test. Every
other console command runs in a subprocess (``loyalty`` from this environment,
``python`` as this interpreter), in the scratch folder, with standard error merged into the output; leading ``VAR=value`` words set the
environment. The ``>>>`` examples run as doctests in the same folder, with the
tutorial's package importable (removed from sys.path and sys.modules after).
"""

import ast
import doctest
import inspect
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pluggy
import pytest
from test_docs import TITLED, console_examples, missing_lines, write_guide_files

from loyalty_engine import hookspecs
from loyalty_engine.service.rewards import RewardContext
from loyalty_engine.service.scoring import FACTS

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
EXIT_STATUS = re.compile(r"#.*\bexit status (\d+)")
LOYALTY = Path(sys.executable).with_name("loyalty")
PACKAGE = "loyalty-partner-miles"


def hook_specs() -> dict[str, inspect.Signature]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    return {
        name: inspect.signature(getattr(hookspecs, name))
        for name in dir(hookspecs)
        if pm.parse_hookspec_opts(hookspecs, name) is not None
    }


def heading(name: str, signature: inspect.Signature) -> str:
    return f"### {name}({', '.join(signature.parameters)})"


# ------------------------------------------------------------------ meta: hooks are documented and tested


def test_every_hook_has_a_section_headed_by_its_signature():
    specs = hook_specs()
    assert len(specs) >= 7
    headings = set(re.findall(r"^### .*$", TEXT, re.M))
    missing = [heading(name, sig) for name, sig in specs.items() if heading(name, sig) not in headings]
    assert not missing, "docs/plugins.md lacks the sections: " + ", ".join(missing)


def test_every_hook_has_a_test_named_after_it():
    files = [*(ROOT / "tests").glob("test_*.py"), *(ROOT / "plugins").glob("*/tests/test_*.py")]
    names = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
    untested = [h for h in hook_specs() if not any(n == f"test_{h}" or n.startswith(f"test_{h}_") for n in names)]
    assert not untested, "hooks without a test named after them: " + ", ".join(untested)


def test_reference_covers_member_facts_and_the_reward_context():
    assert [f for f in FACTS if f"| `{f}` |" not in TEXT] == []
    public = [n for n in dir(RewardContext) if not n.startswith("_") and n not in ("record", "source")]
    assert [n for n in public if f"`ctx.{n}" not in TEXT] == []


def test_every_block_is_run():
    """Each fenced block is a file the tests write, a console block, a doctest or the layout checked below."""
    kinds = []
    for match in FENCE.finditer(TEXT):
        info, body = match.group(1), match.group(2)
        line = TEXT[: match.start()].count("\n") + 1
        if 'title="' in info:
            kinds.append("file")
        elif info.strip() == "console":
            kinds.append("console")
        elif info.strip() == "python" and body.lstrip().startswith(">>>"):
            kinds.append("doctest")
        elif info.strip() == "text" and body.startswith(f"{PACKAGE}/\n"):
            kinds.append("layout")
        else:
            raise AssertionError(f"docs/plugins.md:{line}: a ```{info} block that no test runs")
    assert kinds.count("layout") == 1 and kinds.count("doctest") >= 10


def test_layout_lists_the_files_the_guide_ships():
    layout = re.search(rf"^```text\n{PACKAGE}/\n(.*?)^```", TEXT, re.S | re.M).group(1).split()
    shipped = {name for name, _ in TITLED.findall(TEXT) if name.startswith(f"{PACKAGE}/")}
    assert {f"{PACKAGE}/{path}" for path in layout} == shipped


def test_console_examples_cover_the_whole_tutorial():
    commands = [command for _, command, _ in console_examples(TEXT)]
    for needed in (
        f"pip install ./{PACKAGE}",
        "loyalty plugins --json",
        "loyalty check wrong.loy",
        f"LOYALTY_LOAD_PLUGINS= loyalty check {PACKAGE}/examples/miles.loy",
        f"python -m pytest {PACKAGE}/tests",
    ):
        assert any(c.startswith(needed) for c in commands), f"no console example runs: {needed}"


# ------------------------------------------------------------------ running the guide


@pytest.fixture
def scratch(tmp_path):
    write_guide_files(TEXT, tmp_path)
    (tmp_path / "site").mkdir()
    return tmp_path


def install(folder: Path, site: Path) -> Path:
    """Make ``folder`` an installed distribution: a dist-info from its pyproject.toml, found on ``site``."""
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["loyalty_engine"].items())
    (info / "entry_points.txt").write_text(f"[loyalty_engine]\n{points}", encoding="utf-8")
    return folder


def run(command: str, cwd: Path, paths: list[Path]) -> subprocess.CompletedProcess:
    words = shlex.split(command, comments=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    env.update(PYTHONPATH=os.pathsep.join(str(p) for p in paths), PYTHONIOENCODING="utf-8")
    loyalty = [str(LOYALTY)] if LOYALTY.exists() else [sys.executable, "-m", "loyalty_engine.cli"]
    program = {"loyalty": loyalty, "python": [sys.executable]}[words[0]]
    return subprocess.run(
        [*program, *words[1:]],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


def test_console_examples(scratch):
    site = scratch / "site"
    paths = [site]
    installed = []
    for line, command, expected in console_examples(TEXT):
        where = f"docs/plugins.md:{line}: $ {command}"
        if command.startswith("pip install ./"):
            paths.append(install(scratch / command.split("./", 1)[1].split()[0], site))
            installed.append(command)
            continue
        result = run(command, scratch, paths)
        status = EXIT_STATUS.search(command)
        output = f"{where}\n--- output ---\n{result.stdout}"
        assert result.returncode == (int(status.group(1)) if status else 0), output
        missing = missing_lines(expected, result.stdout)
        assert not missing, output + "--- not found (in order) ---\n" + "\n".join(missing)
    assert installed, "the guide installs nothing"


def test_plugins_json_lists_the_example_and_its_rule_file_checks(scratch):
    import json

    paths = [scratch / "site", install(scratch / PACKAGE, scratch / "site")]
    listed = json.loads(run("loyalty plugins --json", scratch, paths).stdout)
    mine = [p for p in listed["plugins"] if p["distribution"] == PACKAGE]
    assert mine and mine[0]["provides"] == {"reward type": ["partner_miles"], "function": ["miles_for"]}
    assert run(f"loyalty check {PACKAGE}/examples/miles.loy", scratch, paths).returncode == 0
    without = run(f"LOYALTY_LOAD_PLUGINS= loyalty check --json {PACKAGE}/examples/miles.loy", scratch, paths)
    first = json.loads(without.stdout)[0]["diagnostics"][0]
    assert (without.returncode, first["line"], first["column"]) == (1, 9, 10)


def test_doctests(scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    package = str(scratch / PACKAGE)
    sys.path.insert(0, package)
    try:
        failures, tried = doctest.testfile(
            str(GUIDE), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
    finally:
        sys.path.remove(package)
        sys.modules.pop("loyalty_partner_miles", None)
        os.environ.pop("SMS_API_KEY", None)
    assert tried > 0 and failures == 0
