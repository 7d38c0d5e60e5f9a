"""The checker's errors and warnings: place, source line, caret, hint; all errors in a file."""

from loyalty_engine.program import check_program

HEADER = 'program "T" { currency CNY  timezone "Asia/Shanghai" }\n'


def check(text):
    return check_program("rules.loy", text=text)


def test_three_separate_mistakes_are_all_reported_with_place_caret_and_hint():
    text = HEADER + (
        "tiers by spend over last 12 months { member from 0  gold from 5000 }\n"
        'rule "A" on purchase when net_amont >= 100 { award 10 points }\n'
        'rule "B" on purchase when member.tier == "glod" { set tier gold }\n'
        'rule "C" on purchase when channel == 5 { award 1 point per 1 CNY of net_amount }\n'
    )
    result = check(text)
    rendered = [d.render() for d in result.errors]
    assert len(result.errors) == 3, rendered
    first = rendered[0].splitlines()
    assert first[0] == "rules.loy:3:27: error: unknown name 'net_amont'"
    assert first[1].strip().startswith('rule "A" on purchase when net_amont')
    assert first[2].index("^") == first[1].index("net_amont")
    assert first[3].strip() == "hint: did you mean 'net_amount'?"
    assert "unknown tier 'glod'" in rendered[1] and "did you mean 'gold'?" in rendered[1]
    assert "cannot compare a text with a number" in rendered[2]


def test_syntax_errors_in_several_declarations_are_all_reported():
    text = (
        HEADER + 'rule Coffee on purchase { award 1 point }\nrule "B" on purchase when amount = 5 { award 1 point }\n'
    )
    result = check(text)
    messages = [(d.line, d.message, d.hint) for d in result.errors]
    assert messages[0][0] == 2 and "expected a quoted text" in messages[0][1]
    assert '"Coffee"' in messages[0][2]
    assert messages[1][0] == 3 and messages[1][2] == "to compare, write '=='"


def test_error_recovery_reads_each_part_of_the_file_about_twice(monkeypatch):
    """After each syntax error the checker used to parse the whole file again: 20 errors in a 150 KiB
    program were 20 full parses (5 s). Now it goes on from the next declaration, and the good
    declarations are all kept: the duplicate of a rule between two broken ones is still found."""
    from lark.exceptions import UnexpectedInput

    from loyalty_engine.language import parser

    rules = [f'rule "R{i}" on purchase when net_amount >= {i} {{ award 1 point }}\n' for i in range(200)]
    for i in range(5, 200, 10):  # 20 broken rules: as many syntax errors as the checker reports
        rules[i] = rules[i].replace(" when ", " when when ")
    rules[100] = rules[100].replace('"R100"', '"R99"')  # between the broken R95 and R105
    text = HEADER + "".join(rules)
    read = []
    real = parser.grammar()

    class Counting:
        def parse(self, source, start):  # counts what Lark read: up to the error, or all
            try:
                tree = real.parse(source, start=start)
            except UnexpectedInput as exc:
                source = source[: parser._offset_of(exc, source)]
                raise
            finally:
                read.append(len(source) - source.count(" ") - source.count("\n"))
            return tree

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(parser, "grammar", lambda: Counting())
    result = check(text)
    syntax = [d.line for d in result.errors if d.message.startswith("unexpected")]
    assert syntax == [i + 2 for i in range(5, 200, 10)]
    assert [d.line for d in result.diagnostics if "duplicate rule name 'R99'" in d.message] == [102]
    whole = len(text) - text.count(" ") - text.count("\n")
    assert sum(read) <= 2.2 * whole, (sum(read) / whole, len(read))


def test_unclosed_brace_names_the_fix():
    result = check(HEADER + 'rule "A" on purchase { award 1 point\n')
    assert result.errors[0].hint == "a '{' is not closed: add the missing '}'"


def test_did_you_mean_for_functions_channels_scores_coupons_events_timezone_rounding():
    text = (
        'program "T" { currency CNY  timezone "Asia/Shangai"  rounding flor }\n'
        "coupon BIG10 { discount 10%  valid 30 days }\n"
        'rule "A" on purchse { award 1 point }\n'
        'rule "B" on purchase when weekdy(today) == 1 { issue coupon BIG01 }\n'
        'rule "C" on purchase when score("churn_rsk") > 0.5 { send smss "hi" }\n'
    )
    hints = {d.message: d.hint for d in check(text).errors}
    assert hints["unknown timezone 'Asia/Shangai'"] == "did you mean 'Asia/Shanghai'?"
    assert hints["unknown rounding mode 'flor'"] == "did you mean 'floor'?"
    assert hints["unknown event type 'purchse'"] == "did you mean 'purchase'?"
    assert hints["unknown function 'weekdy'"] == "did you mean 'weekday'?"
    assert hints["unknown coupon 'BIG01'"] == "did you mean 'BIG10'?"
    assert hints["unknown score 'churn_rsk'"] == "did you mean 'churn_risk'?"
    assert hints["unknown channel 'smss'"] == "did you mean 'sms'?"


def test_type_errors():
    text = HEADER + (
        'rule "A" on purchase when sum(category of items) > 3 { award 1 point }\n'
        'rule "B" on purchase when net_amount + "gold" > 1 { award 1 point }\n'
        'rule "C" on purchase when net_amount { award 1 point }\n'
        'rule "D" on purchase { award net_amount points }\n'
    )
    messages = [d.message for d in check(text).errors]
    assert "'sum' adds up numbers, but this is a text" in messages
    assert "cannot apply '+' to a money and a text" in messages
    assert "a condition must be true or false, but this is a money" in messages
    assert "this is a money amount, but 'points' counts points" in messages


def test_warnings_contradiction_duplicate_and_shadowed_rules():
    text = HEADER + (
        'group "Welcome" pick first\n'
        'rule "A" on purchase when net_amount >= 500 and net_amount < 100 { award 1 point }\n'
        'rule "A" on purchase { award 2 points }\n'
        'rule "W1" on purchase { award 5 points  group "Welcome" }\n'
        'rule "W2" on purchase when net_amount > 10 { award 50 points  group "Welcome" }\n'
    )
    result = check(text)
    assert not result.errors
    warnings = [d.message for d in result.warnings]
    assert any("'A' can never fire" in w for w in warnings)
    assert any("duplicate rule name 'A'" in w for w in warnings)
    assert any("rule 'W2' never applies: 'W1' comes first in group 'Welcome'" in w for w in warnings)


def test_unknown_reward_type_names_plugins():
    result = check(HEADER + 'rule "A" on purchase { reward partner_miles(miles: 10) }\n')
    assert result.errors[0].message == "unknown reward type 'partner_miles'"
    assert "plugin" in result.errors[0].hint


def test_missing_include_and_header():
    result = check('include "nowhere.loy"\nrule "A" on purchase { award 1 point }\n')
    messages = [d.message for d in result.errors]
    # the missing file may hold the header, so only the include is reported
    assert messages == ["included file 'nowhere.loy' does not exist"]
    result = check('rule "A" on purchase { award 1 point }\n')
    assert [d.message for d in result.errors] == ["the program has no header"]


def test_clean_program_has_no_diagnostics():
    text = HEADER + (
        "# a comment\n"
        'rule "Base" on purchase { award 1 point per 1 CNY of net_amount }\n'
        'rule "Coffee" on purchase when any item where category == "coffee" {\n'
        '  award 1 point per 1 CNY of items where category == "coffee"  # stacked\n'
        "}\n"
    )
    assert check(text).diagnostics == []


def test_a_file_saved_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    text = HEADER + 'rule "A" on purchase when net_amont > 1 { award 1 point }\n'
    plain, marked = tmp_path / "plain.loy", tmp_path / "marked.loy"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")  # what Notepad writes
    errors = check_program(marked).errors
    assert [(d.line, d.column, d.message) for d in errors] == [
        (d.line, d.column, d.message) for d in check_program(plain).errors
    ]
    assert errors[0].message == "unknown name 'net_amont'"


def test_include_stays_inside_the_program_folder(tmp_path):
    from loyalty_engine.program import check_program, load_program

    (tmp_path / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    shop = tmp_path / "shop"
    (shop / "campaigns").mkdir(parents=True)
    (shop / "campaigns" / "summer.loy").write_text('rule "Summer" on purchase { award 5 points }\n')
    header = 'program "T" { currency CNY timezone "Asia/Shanghai" }\n'
    (shop / "main.loy").write_text(header + 'include "campaigns/summer.loy"\n')
    assert load_program(shop / "main.loy").code.events  # a folder below is fine
    for where in ("../secret.txt", str(tmp_path / "secret.txt"), "campaigns/../../secret.txt"):
        result = check_program(shop / "main.loy", text=header + f'include "{where}"\n')
        assert [d.message for d in result.errors] == [f"include '{where}' is outside the program's folder"]
        rendered = "\n".join(d.render() for d in result.diagnostics)
        assert "root:x" not in rendered and f"{shop}" in result.errors[0].hint


def test_brackets_nested_too_deeply_are_refused_before_parsing_and_the_rest_is_still_checked():
    deep = "(" * 20_000 + "net_amount > 1" + ")" * 20_000
    text = HEADER + (
        f'rule "Deep" on purchase when {deep} {{ award 1 point }}\n'
        'rule "Typo" on purchase when net_amont > 1 { award 1 point }\n'
        'rule "Open" on purchase when (net_amount > 1 { award 1 point }\n'  # a ')' left out: a syntax error
        'rule "Fine" on purchase when ((((net_amount > 1)))) { award 1 point }\n'
    )
    errors = [(d.line, d.column, d.message) for d in check(text).errors]
    assert errors[0] == (2, 30 + 60, "expression nested too deeply (more than 60 levels)")
    assert errors[1] == (3, 30, "unknown name 'net_amont'")
    assert errors[2] == (4, 46, "unexpected '{'; expected ')'")
    assert len(errors) == 3  # rule "Fine" checks clean


def test_past_twenty_syntax_errors_the_checker_says_it_stopped():
    rules = [f'rule "R{i}" on purchase when when net_amount >= {i} {{ award 1 point }}\n' for i in range(25)]
    errors = check(HEADER + "".join(rules)).errors
    assert len(errors) == 21 and all(e.message.startswith("unexpected") for e in errors[:20])
    assert (errors[20].line, errors[20].column) == (22, 1)  # where rule R20 begins
    assert errors[20].message == "checking stopped after 20 syntax errors; the rest of the file was not read"
