"""Rules fuzzing (RELIABILITY.md): generated and mutated rule files give only positioned, documented
errors, check in under a second, and never run or load anything. The 100,000-file run is
benchmarks/fuzz_rules.py; this is the CI-sized one. Replay a failure with the seed and case it names:
``python benchmarks/fuzz_rules.py --seed S --case I``.
"""

import os

import pytest

from tests import rulefuzz

SEED = int(os.environ.get("LOYALTY_FUZZ_SEED", "20261201"))
FILES = int(os.environ.get("LOYALTY_FUZZ_FILES", "2500"))

HEADER = 'program "T" { currency CNY  timezone "Asia/Shanghai" }\n'

# Small files that once broke the property, each named by what went wrong.
REGRESSIONS = {
    # str.splitlines() also breaks at U+2028 and form feeds, the parser only at "\n": every diagnostic
    # after such a character showed the wrong source line (and the caret out of it)
    "line separator in a comment": HEADER + '# a\u2028b\nrule "R" on purchase { award 1 pointz }\n',
    "form feed in a text": HEADER + 'rule "R\x0c" on purchase {\n  award 1 pointz\n}\n',
    "line separator before end of file": HEADER + 'rule "R" on purchase {\u2028 award 1 point\n',
    # int() refuses more than 4,300 digits: a ValueError escaped check_program
    "5000-digit limit count": HEADER
    + 'rule "R" on purchase { award 1 point\n limit '
    + "9" * 5000
    + " times per day }",
    "4401-digit expiry": HEADER.replace("}", "points expire 1" + "0" * 4400 + " months after earning }"),
    "5000-digit priority": HEADER + 'rule "R" on purchase { award 1 point priority -' + "9" * 5000 + " }",
    "5000-digit cap": HEADER + 'rule "R" on purchase { cap points at ' + "9" * 5000 + " }",
    # an unknown time zone made ZoneInfo open a file of that name and re-read the whole tz database
    "misspelt timezone": 'program "T" { currency CNY  timezone "Europe/Pariss" }\n',
    "offset as timezone": 'program "T" { currency CNY  timezone "UTC+8" }\n',
    "path as timezone": 'program "T" { currency CNY  timezone "../../etc/passwd" }\n',
    # a lone surrogate checked clean, then load_program raised UnicodeEncodeError hashing the text,
    # and a diagnostic showing the line could not be printed
    "lone surrogate in a rule name": HEADER + 'rule "R\ud800" on purchase { award 1 point }\n',
    "lone surrogate in a message": HEADER + 'rule "R" on purchase { send sms "hi \udfff{member.name}" }\n',
    "lone surrogates and another error": HEADER + '\ud83d rule "R" on purchase { award 1 pointz }\udc00\n',
    # a rule name with \n in it put a line break into the message: the head of the diagnostic took two lines
    "new line in a rule name": HEADER + 'rule "a\\nb" on purchase { }\n',
    "new line in a trigger name": HEADER + 'trigger "t\\r\\n" daily { award 1 point }\n',
    # blanking a declaration after a syntax error turned "\r" into " ": the end-of-file error of a CRLF file
    # was then placed a column past the end of its last line
    "CRLF file cut short after an error": 'trigger "Win back" weekly on monday\r\ntrigger "Win back" weekly on monday\r\n',
}

# Files that checked clean although no event could ever be evaluated with them: now errors with a position.
TOO_LONG = {
    "5000-digit fixed award": HEADER + 'rule "R" on purchase { award ' + "9" * 5000 + " points }",
    "30-digit date offset": HEADER + 'rule "R" on purchase when today + ' + "9" * 30 + " > today { award 1 point }",
    "30-digit rolling limit": HEADER + 'rule "R" on purchase { award 1 point limit once per ' + "9" * 30 + " days }",
    "3000-decimal multiplier": HEADER + 'rule "R" on purchase { multiply points by 0.' + "0" * 3000 + "1 }",
}


@pytest.mark.parametrize("name", sorted(TOO_LONG))
def test_too_long_numbers_are_a_positioned_error(name):
    from loyalty_engine.program import check_program

    result = check_program("long.loy", text=TOO_LONG[name])
    assert [d.message.split(" is too long")[0][:10] for d in result.errors] == ["the number"], result.errors
    error = result.errors[0]
    assert error.line == 2 and error.hint and "15 digits" in error.hint
    assert error.render().splitlines()[2].strip().startswith("^")


def test_fifteen_digits_are_still_a_number():
    from loyalty_engine.program import load_program
    from tests.conftest import member, purchase

    text = HEADER + 'rule "R" on purchase when net_amount < 999999999999999.9999999999 { award 3 points }\n'
    assert load_program("ok.loy", text=text).evaluate(purchase(("A", "x", 1, "5.00")), member()).points == 3


def test_lone_surrogate_is_an_error_at_its_position():
    from loyalty_engine.program import check_program

    result = check_program("s.loy", text=HEADER + 'rule "R" on purchase {\n  award 1 pointz  # \ud800\n}\n')
    errors = [(d.line, d.column, d.message.split(" (")[0]) for d in result.errors]
    assert errors == [(3, 11, "unknown balance 'pointz'"), (3, 21, "the text holds a lone surrogate")]


def test_a_byte_order_mark_is_not_part_of_the_program(tmp_path):
    from loyalty_engine.program import check_program

    path = tmp_path / "bom.loy"
    path.write_text(HEADER + 'rule "R" on purchase { award 1 point }\n', encoding="utf-8-sig")
    assert check_program(path).diagnostics == []
    result = check_program("b.loy", text="\ufeff" + HEADER.replace("CNY", "cny"))
    assert [(d.line, d.column) for d in result.diagnostics] == [(1, 24)]


@pytest.mark.parametrize("number", ["1e400", "2E3", "5e"])
def test_a_number_with_an_exponent_gets_a_hint(number):
    from loyalty_engine.program import check_program

    result = check_program(
        "e.loy", text=HEADER + f'rule "R" on purchase when net_amount > {number} {{ award 1 point }}\n'
    )
    assert result.errors and result.errors[0].column == 41
    assert "without an exponent" in (result.errors[0].hint or "")


def test_error_recovery_finds_declaration_starts_in_one_pass():
    """Error recovery asked, for each declaration start, whether it was outside braces by rescanning the
    file from its start: quadratic, 1.5 s of a 92 kB fuzz case's check, minutes for 6,000 declarations."""
    import time

    from loyalty_engine.language import parser

    rule = 'rule "R{}" on purchase when net_amount >= {} {{ award 1 point }}  # {{ \n'
    text = HEADER + "".join(rule.format(i, i) for i in range(6000))  # ~400 kB
    start = time.perf_counter()
    blanked = parser._blanked(text, *parser._declaration_at(text, len(text) // 2))
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"{elapsed:.2f} s"
    assert len(blanked) == len(text) and blanked.count("rule ") == 5999


@pytest.fixture(scope="module")
def warmed():
    rulefuzz.warm_up()


def test_fuzz_corpus_keeps_the_property(warmed):
    print(f"rules fuzzing: seed {SEED}, {FILES} files")
    failures = []
    times = []
    for index in range(FILES):
        _, text = rulefuzz.case(SEED, index)
        result = rulefuzz.check_case(text)
        times.append(result.seconds)
        if result.violations:
            failures.append(rulefuzz.reproducer(SEED, index, text, result.violations))
    times.sort()
    print(f"max check {times[-1]:.3f} s, median {times[len(times) // 2] * 1000:.1f} ms")
    assert not failures, f"{len(failures)} of {FILES} files broke the property:\n" + "\n".join(failures[:10])


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_case(warmed, name):
    text = REGRESSIONS[name]
    result = rulefuzz.check_case(text)
    assert result.violations == [], rulefuzz.reproducer(0, 0, text, result.violations)


def test_cases_replay_from_seed_and_index():
    assert rulefuzz.case(7, 123) == rulefuzz.case(7, 123)
    assert rulefuzz.case(7, 123) != rulefuzz.case(7, 124)
    kinds = {rulefuzz.case(7, i)[0] for i in range(50)}
    assert kinds == {"generated", "mutated"}


def test_generated_programs_are_mostly_meant_to_check_clean(warmed):
    """A generator whose files all fail to parse would test only the parser: enough must get through."""
    clean = sum(rulefuzz.check_case(rulefuzz.generated(rulefuzz.Random(i))).ok for i in range(300))
    assert clean >= 5


def test_the_property_catches_a_leak_of_user_text_into_compile(warmed, monkeypatch):
    """Negative control: a checker that compiled the rule file's text would be caught."""
    import loyalty_engine.program as program_module

    real = program_module.check_program

    def leaky(path, text=None, schema=None):
        compile(repr(text), "<leak>", "eval")
        return real(path, text=text, schema=schema)

    monkeypatch.setattr(program_module, "check_program", leaky)
    result = rulefuzz.check_case(HEADER + f'rule "{rulefuzz.MARKER}" on purchase {{ award 1 point }}\n')
    assert any("contains the rule file's text" in v for v in result.violations), result.violations


def test_the_property_catches_an_open_and_a_bad_position(warmed, monkeypatch):
    import loyalty_engine.program as program_module
    from loyalty_engine.language.diagnostics import Diagnostic

    real = program_module.check_program

    def opener(path, text=None, schema=None):
        with open(__file__, encoding="utf-8"):
            pass
        result = real(path, text=text, schema=schema)
        result.diagnostics.append(Diagnostic("error", "made up", path, 99, 1))
        return result

    monkeypatch.setattr(program_module, "check_program", opener)
    result = rulefuzz.check_case(HEADER)
    assert any(v.startswith("audit: open") for v in result.violations), result.violations
    assert any("line 99" in v for v in result.violations), result.violations
