"""Examples in docs/ run in the tests, so they cannot rot."""

import doctest
import re
from pathlib import Path

import pytest

from loyalty_engine.program import check_program

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = ROOT / "docs" / "language.md"
BLOCK = re.compile(r"```loy\n(.*?)```", re.S)

PRELUDE_HEADER = (
    'program "Doc" { currency CNY  timezone "Asia/Shanghai"  balance stamps  balance cashback money }\n'
    "coupon BIG10 { discount 10%  valid 30 days }\n"
)
PRELUDE_TIERS = (
    "tiers by spend over last 12 months { member from 0  silver from 1000 earn x1.25  gold from 5000 earn x1.5 }\n"
)
PRELUDE_GROUP = 'group "Welcome" pick best\n'


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


@pytest.mark.parametrize("name", ["embedding.md"])
def test_guides_run_as_doctests(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    failures, tried = doctest.testfile(
        str(ROOT / "docs" / name), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert tried > 0 and failures == 0
