"""Parse rule files into syntax trees: Lark (LALR, strict) plus error reporting.

Reports every syntax error of a file, not only the first: after an error the
top-level declaration that holds it is blanked out (newlines kept, so positions
stay true) and parsing goes on from the next declaration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path as FsPath

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .diagnostics import Reporter, did_you_mean, split_lines
from .transform import TreeToAst, number_too_long

MAX_FILE_BYTES = 1_048_576
MAX_NESTING = 60
# A chain of "or" / "and" / "+" is one level of nesting but a tree level per term; the generated
# Python nests at most 200 parentheses.
MAX_TREE_DEPTH = 150
MAX_SYNTAX_ERRORS = 20
MAX_PERIOD_DAYS = 36_525  # 100 years: a longer period runs past the last date the calendar can hold
_NUMBER_TOKENS = {"NUMBER": "", "INT": "", "SIGNED_INT_T": "", "PERCENT": "%", "MULT": "x"}
_UNIT_DAYS = {"DAY_UNIT": 1, "WEEK_UNIT": 7, "MONTH_UNIT": 30.4375, "YEAR_UNIT": 365.25}  # 1200 months = 100 years

TOP_KEYWORDS = (
    "program",
    "include",
    "tiers",
    "rule",
    "campaign",
    "group",
    "coupon",
    "trigger",
    "event",
    "member",
)
_TOP_START = re.compile(r"(?m)^[ \t]*(" + "|".join(TOP_KEYWORDS) + r")\b")


@lru_cache(maxsize=1)
def grammar() -> Lark:
    text = resources.files(__package__).joinpath("loyalty.lark").read_text(encoding="utf-8")
    # cache=True keeps the LALR tables in a temp file keyed by the grammar's hash: ~150 ms saved per process
    return Lark(
        text,
        cache=True,
        parser="lalr",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "expr"],
    )


def load_files(entry: str, reporter: Reporter, text: str | None = None) -> list[ast.Module]:
    """Parse ``entry`` and every file it includes (each once), in include order."""
    modules: list[ast.Module] = []
    seen: set[str] = set()
    root = FsPath(entry).resolve().parent  # included files stay in the main file's folder (or below it)
    pending: list[tuple[str, str | None, ast.Span | None]] = [(entry, text, None)]
    while pending:
        path, given_text, included_at = pending.pop(0)
        key = str(FsPath(path).resolve()) if given_text is None else path
        if key in seen:
            continue
        seen.add(key)
        source = given_text
        if source is None:
            source = _read(path, reporter, included_at)
            if source is None:
                continue
        module = parse_text(source, path, reporter)
        if module is None:
            continue
        modules.append(module)
        base = FsPath(path).parent
        for item in module.items:
            if isinstance(item, ast.Include):
                target = base / item.path
                if not target.resolve().is_relative_to(root):
                    reporter.error(
                        item.span,
                        f"include '{item.path}' is outside the program's folder",
                        f"keep the included files in {root} or a folder below it",
                    )
                    continue
                pending.append((str(target), None, item.span))
    return modules


def _read(path: str, reporter: Reporter, included_at: ast.Span | None) -> str | None:
    where = included_at or ast.Span(path, 1, 1, 1, 1)
    try:
        size = FsPath(path).stat().st_size
        if size > MAX_FILE_BYTES:
            reporter.error(
                where,
                f"rule file '{path}' is too large ({size / 1_048_576:.1f} MiB; the limit is "
                f"{MAX_FILE_BYTES // 1_048_576} MiB)",
                "split the program into several files joined with 'include'",
            )
            return None
        return FsPath(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not text
    except FileNotFoundError:
        what = "included file" if included_at else "rule file"
        reporter.error(where, f"{what} '{path}' does not exist")
    except UnicodeDecodeError as exc:
        reporter.error(where, f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        reporter.error(where, f"cannot read '{path}': {exc.strerror}")
    return None


def parse_text(text: str, path: str, reporter: Reporter) -> ast.Module | None:
    """Parse one file's text; syntax errors go to ``reporter``.

    Returns the module built from the declarations that parsed, or None if
    nothing could be recovered.
    """
    # a byte order mark (Windows editors write one) is no part of the program: editors do not count it as a column
    text = text.removeprefix("\ufeff")
    reporter.sources.add(path, text)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        reporter.error(
            ast.Span(path, 1, 1, 1, 1),
            f"rule file is too large ({len(text.encode('utf-8', 'surrogatepass')) / 1_048_576:.1f} MiB; "
            f"the limit is {MAX_FILE_BYTES // 1_048_576} MiB)",
            "split the program into several files joined with 'include'",
        )
        return None
    text = _skip_too_deep(_replace_surrogates(text, path, reporter), path, reporter)
    if text is None:
        return None
    tree = _parse_recovering(text, path, reporter)
    if tree is None:
        return None
    if not _check_depth(tree, path, reporter):
        return None
    if not _check_numbers(tree, path, reporter):
        return None
    items = TreeToAst(path, reporter, parse_expr=_template_expr_parser(path, reporter))._transform_module(tree)
    return ast.Module(path, tuple(items))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(text: str, path: str, reporter: Reporter) -> str:
    """Report lone surrogates (only text given as a Python str can hold them; no UTF-8 file can).

    They cannot be encoded, so a name or message holding one would fail wherever it is written
    out (the program's version hash, the store, JSON). Each becomes U+FFFD for the rest of the
    parse and in the source lines shown, one character for one, so that every position stays true.
    """
    found = list(_SURROGATE.finditer(text))
    if not found:
        return text
    replaced = _SURROGATE.sub("\ufffd", text)
    reporter.sources.add(path, replaced)  # the source lines shown under diagnostics must be printable too
    for match in found[:MAX_SYNTAX_ERRORS]:
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        reporter.error(
            ast.Span(path, line, column, line, column + 1),
            f"the text holds a lone surrogate (U+{ord(match.group()):04X}), which is not a character",
            "the rule file's text must be valid Unicode; decode it with errors='replace' or fix its source",
        )
    return replaced


def _template_expr_parser(path: str, reporter: Reporter):
    def parse_placeholder(text: str, line: int, column: int):
        deep = _too_deep(text)
        if deep is not None:
            _report_too_deep(ast.Span(path, line, column + deep, line, column + deep + 1), reporter)
            return None
        try:
            tree = grammar().parse(text, start="expr")
        except UnexpectedInput as exc:
            col = column + max(0, getattr(exc, "column", 1) - 1)
            reporter.error(
                ast.Span(path, line, col, line, col + 1),
                f"cannot read the placeholder '{{{text}}}' in this message",
                "placeholders hold a name or expression, e.g. {member.name} or {points}",
            )
            return None
        if not _check_depth(tree, path, reporter):
            return None
        return TreeToAst(path, reporter, line_offset=line - 1, column_offset=column - 1)._transform_expr(tree)

    return parse_placeholder


def _parse_recovering(text: str, path: str, reporter: Reporter) -> Tree | None:
    """Parse ``text``, reporting up to MAX_SYNTAX_ERRORS syntax errors, one per top-level declaration.

    After an error the declaration holding it is skipped and parsing goes on from the next one;
    what came before is parsed on its own. Text already dealt with is blanked (newlines kept, so
    every position stays true), never re-parsed: each part of the file is read about twice however
    many errors it has, where re-parsing the whole file after each error took 5 s for 20 errors in
    a 150 KiB program.
    """
    parts: list[Tree] = []
    done = 0  # text before this offset has been parsed into ``parts`` or skipped
    for attempt in range(MAX_SYNTAX_ERRORS + 1):
        view = _blanked(text, 0, done)
        try:
            parts.append(grammar().parse(view, start="start"))
            return Tree("start", [child for part in parts for child in part.children])
        except UnexpectedInput as exc:
            if attempt == MAX_SYNTAX_ERRORS:
                break
            _report_syntax(exc, view, path, reporter)
            found = _declaration_at(view, _offset_of(exc, view), done)
            if found is None or found[1] <= done:
                return None
            begin, end = found
            if begin > done:
                try:  # the declarations before the one in error parsed: keep them
                    parts.append(grammar().parse(_blanked(view, begin, len(view)), start="start"))
                except UnexpectedInput:
                    # They were only a valid beginning (rare): blank the declaration in error and read
                    # them again together with what follows, as if it had never been there.
                    text = _blanked(text, begin, end)
                    continue
            done = end
    reporter.error(
        _point(path, text, done),
        f"checking stopped after {MAX_SYNTAX_ERRORS} syntax errors; the rest of the file was not read",
        "fix these and check again",
    )
    return None


def _point(path: str, text: str, offset: int) -> ast.Span:
    """The one-character span at ``offset``, with lines counted as Lark counts them."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return ast.Span(path, line, column, line, column + 1)


def _blanked(text: str, begin: int, end: int) -> str:
    """``text`` with ``text[begin:end]`` turned into spaces, keeping newlines and carriage returns
    (so a CRLF line's last column stays true)."""
    if begin >= end:
        return text
    segment = re.sub(r"[^\r\n]+", lambda m: " " * len(m.group()), text[begin:end])
    return text[:begin] + segment + text[end:]


def _offset_of(exc: UnexpectedInput, text: str) -> int:
    pos = getattr(exc, "pos_in_stream", None)
    if pos is None:
        token = getattr(exc, "token", None)
        pos = getattr(token, "start_pos", None)
    if pos is None:
        return len(text)
    return pos


def _declaration_at(text: str, offset: int, lo: int = 0) -> tuple[int, int] | None:
    """Where the top-level declaration holding ``offset`` begins and ends, looking from ``lo`` (a
    point outside every declaration); None if no declaration starts at or before it."""
    line_start = text.rfind("\n", 0, lo) + 1  # the keyword pattern is anchored at the start of a line
    candidates = (m.start(1) for m in _TOP_START.finditer(text, line_start) if m.start(1) >= lo)
    begin, end = None, len(text)
    for start in _at_depth_zero(text, candidates, lo):
        if start > offset:
            end = start
            break
        begin = start
    if begin is None:
        if lo == 0 and end == len(text):
            return None
        begin = lo
    return begin, end


# Comments and strings (a string left open ends with its line): the brackets in them do not count.
_COMMENT_OR_STRING = r'#[^\n]*|"(?:\\[\s\S]|[^"\\\n])*"?'
# What decides whether a point is inside a declaration.
_SCAN = re.compile(_COMMENT_OR_STRING + r"|[{}]")


def _at_depth_zero(text: str, offsets: Iterable[int], lo: int = 0) -> Iterator[int]:
    """The ``offsets`` (ascending, from ``lo``) that are outside every brace, string and comment,
    in one pass over ``text`` that stops when the caller does."""
    depth = 0
    scan = _SCAN.finditer(text, lo)
    match = next(scan, None)
    for offset in offsets:
        inside = False
        while match is not None and match.start() < offset:
            if match.end() > offset:
                inside = True
                break
            token = match.group()
            if token == "{":
                depth += 1
            elif token == "}":
                depth = max(0, depth - 1)
            match = next(scan, None)
        if depth == 0 and not inside:
            yield offset


_CHAINS = frozenset({"or_op", "and_op", "arith"})  # left-nested chains of one operator

# What decides how deeply brackets nest.
_BRACKETS = re.compile(_COMMENT_OR_STRING + r"|[(\[\]){}]")


def _too_deep(text: str) -> int | None:
    """Where a bracket opens more than MAX_NESTING levels (so the tree would be deeper still), or None.

    No bracket stays open across a brace, so the count starts again at each: a ')' left out in one
    rule is its own syntax error, not depth that adds up over the file.
    """
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "{}":
            depth = 0
        elif token in "([":
            depth += 1
            if depth > MAX_NESTING:
                return match.start()
        elif token in ")]":
            depth = max(0, depth - 1)
    return None


def _skip_too_deep(text: str, path: str, reporter: Reporter) -> str | None:
    """Report each declaration whose brackets nest too deeply and blank it, before Lark would build a tree
    thousands of levels deep (0.5 s for 20,000); None if what is too deep is in no declaration."""
    for _ in range(MAX_SYNTAX_ERRORS):
        deep = _too_deep(text)
        if deep is None:
            return text
        _report_too_deep(_point(path, text, deep), reporter)
        found = _declaration_at(text, deep)
        if found is None:
            return None
        text = _blanked(text, *found)
    return None


def _report_too_deep(span: ast.Span, reporter: Reporter) -> None:
    reporter.error(
        span,
        f"expression nested too deeply (more than {MAX_NESTING} levels)",
        "split the condition into simpler parts or several rules",
    )


def _check_depth(tree: Tree, path: str, reporter: Reporter) -> bool:
    """Refuse trees nested deeper than MAX_NESTING, or deeper than MAX_TREE_DEPTH in all, without recursing.

    A chain of one operator (``a or b or c``, ``x + y + z``) is one level of nesting however long it is,
    so that a list of 80 stores joined with ``or`` is not "nested"; the tree it makes is still one level
    deeper per term, which the overall limit keeps within what the recursive passes can walk.
    """
    stack: list[tuple[Tree, int, int]] = [(tree, 1, 1)]
    while stack:
        node, nesting, depth = stack.pop()
        if nesting > MAX_NESTING or depth > MAX_TREE_DEPTH:
            meta = node.meta
            line = getattr(meta, "line", 1)
            col = getattr(meta, "column", 1)
            span = ast.Span(path, line, col, line, col + 1)
            if nesting > MAX_NESTING:
                _report_too_deep(span, reporter)
            else:
                reporter.error(
                    span,
                    f"expression too long: more than about {MAX_TREE_DEPTH - 10} terms joined by operators",
                    'to test one value against many, write e.g. store in ["S1", "S2"]; or split the rule',
                )
            return False
        for i, child in enumerate(node.children):
            if isinstance(child, Tree):
                chained = i == 0 and child.data == node.data and node.data in _CHAINS
                stack.append((child, nesting if chained else nesting + 1, depth + 1))
    return True


def _check_numbers(tree: Tree, path: str, reporter: Reporter) -> bool:
    """Refuse numbers too large to compute with and periods longer than the calendar can hold."""
    ok = True
    for node in tree.iter_subtrees():
        children = node.children
        for i, token in enumerate(children):
            if not isinstance(token, Token) or token.type not in _NUMBER_TOKENS:
                continue
            text = str(token).strip("x%").lstrip("+-")
            problem = number_too_long(text)
            span = ast.Span(path, token.line, token.column, token.end_line or token.line, token.end_column or 0)
            if problem is not None:
                reporter.error(span, *problem)
                ok = False
                continue
            whole = int(text.split(".")[0] or 0)
            unit = children[i + 1] if i + 1 < len(children) else None
            if isinstance(unit, Token) and unit.type in _UNIT_DAYS and whole * _UNIT_DAYS[unit.type] > MAX_PERIOD_DAYS:
                span = ast.Span(path, token.line, token.column, unit.end_line or unit.line, unit.end_column or 0)
                reporter.error(span, f"'{token} {unit}' is too long: periods can be at most 100 years")
                ok = False
    return ok


# ------------------------------------------------------------------ syntax messages

_PRETTY = {
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "DOT": "'.'",
    "STRING": "a quoted text",
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "a whole number",
    "SIGNED_INT_T": "a whole number",
    "DATE": "a date (YYYY-MM-DD)",
    "PERCENT": "a percentage",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*' or '/'",
    "MULT": "a multiplier like x1.5",
    "$END": "end of file",
    "MINUS": "'-'",
    "DAY_UNIT": "'days'",
    "WEEK_UNIT": "'weeks'",
    "MONTH_UNIT": "'months'",
    "YEAR_UNIT": "'years'",
    "CAL_UNIT": "'year', 'month' or 'week'",
    "PERIOD_WORD": "a period (day, week, month, year, member)",
    "CAP_PERIOD": "a period (transaction, day, week, month, year)",
    "PICK": "'best' or 'first'",
    "AFTER_WHAT": "'earning', 'last activity' or 'joining'",
    "ITEMS_KW": "'items' or 'lines'",
    "ONCE": "'once'",
    "MONEY_KW": "'money'",
}


def _describe_terminal(name: str) -> str:
    if name in _PRETTY:
        return _PRETTY[name]
    try:
        pattern = grammar().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return name.lower()


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    value = str(token)
    return f"'{value}'" if len(value) <= 30 else f"'{value[:27]}...'"


def _report_syntax(exc: UnexpectedInput, text: str, path: str, reporter: Reporter) -> None:
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    hint = None
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        expected = sorted(exc.expected)
        message = f"unexpected {_describe_token(token)}"
        hint = _hint_for_token(token, set(expected), text)
        message += _expected_list(expected)
        end = (token.end_column or column + 1) if token.end_line == token.line else column + 1
        span = ast.Span(path, line, column, line, end)
    elif isinstance(exc, (UnexpectedEOF, UnexpectedToken)):
        expected = sorted(getattr(exc, "expected", []) or [])
        lines = split_lines(text)
        line = len(lines)
        column = len(lines[-1]) + 1
        message = "unexpected end of file" + _expected_list(expected)
        if "RBRACE" in expected:
            hint = "a '{' is not closed: add the missing '}'"
        span = ast.Span(path, line, column, line, column + 1)
    elif isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        message = f"unexpected character {char!r}"
        hint = _hint_for_char(char, text, exc.pos_in_stream)
        span = ast.Span(path, line, column, line, column + 1)
    else:  # pragma: no cover - lark only raises the three above
        message = str(exc).splitlines()[0]
        span = ast.Span(path, line, column, line, column + 1)
    reporter.error(span, message, hint)


# Other spellings the language accepts ("max 1 per member", "rolling 12 months", "10% off") are not
# offered in "expected ..." lists: the list names each thing once, in the words the reference uses.
_SYNONYMS = frozenset({"MAX", "ROLLING"})


def _expected_list(expected: list[str]) -> str:
    shown = [e for e in expected if not e.startswith("__") and e not in _SYNONYMS]
    if "NUMBER" not in shown and "INT" not in shown:  # a percentage with no number beside it: only "10% off"
        shown = [e for e in shown if e != "PERCENT"]
    names = [_describe_terminal(e) for e in shown]
    names = sorted(set(names))
    if not names:
        return ""
    if len(names) > 8:
        return ""
    if len(names) == 1:
        return f"; expected {names[0]}"
    return "; expected " + ", ".join(names[:-1]) + f" or {names[-1]}"


def _hint_for_token(token: Token, expected: set[str], text: str) -> str | None:
    value = str(token)
    start = token.start_pos or 0
    if token.type == "NAME" and re.fullmatch(r"[eE][+-]?\d*", value) and text[start - 1 : start].isdigit():
        return "numbers are written in full, without an exponent (1e3 is 1000); at most 15 digits"
    if "STRING" in expected and token.type == "NAME":
        return f'names of programs, rules, campaigns and triggers are quoted: "{value}"'
    if "LBRACE" in expected and len(expected) <= 4:
        return "the body of a declaration goes between '{' and '}'"
    if value in TOP_KEYWORDS and "RBRACE" in expected:
        return "the previous declaration is missing its closing '}'"
    if token.type == "NAME" and value in ("AND", "OR", "NOT", "And", "Or", "Not"):
        return f"logical operators are written in lower case: '{value.lower()}'"
    if value == "." and expected == {"WHERE"} and re.search(r"\b(any|all|count)\s+items?\s*$", text[:start]):
        return "the condition on each line follows 'where': any item where category == \"coffee\""
    if token.type == "COMP_OP" and "COMP_OP" not in expected:
        return "comparisons cannot be chained; join them with 'and'"
    if "NAME" in expected and token.type in ("NUMBER", "INT"):
        return "a name was expected here (names start with a letter)"
    keywords = _keywords(expected)
    if token.type == "RBRACE" and keywords & set(TOP_KEYWORDS):
        return "no '{' is open here: remove this '}'"
    if token.type == "NAME":
        return did_you_mean(value, keywords)  # a misspelt keyword: 'rul', 'awrd'
    return None


def _keywords(expected: set[str]) -> set[str]:
    """The words among the expected terminals (the keywords that may come here)."""
    words = set()
    for name in expected:
        try:
            pattern = grammar().get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.isidentifier():
            words.add(pattern.value)
        elif (shown := re.fullmatch(r"'(\w+)'", _PRETTY.get(name, ""))) is not None:  # 'days', 'months'...
            words.add(shown.group(1))
    return words


def _hint_for_char(char: str, text: str, pos: int) -> str | None:
    nxt = text[pos + 1 : pos + 2]
    if char == "=" and nxt != "=":
        return "to compare, write '=='"
    if char == "&":
        return "write 'and' instead of '&&'"
    if char == "|":
        return "write 'or' instead of '||'"
    if char == "!":
        return "write 'not' instead of '!', or '!=' for 'not equal'"
    if char == '"':
        return "this text is not closed: add the missing '\"' on the same line"
    if char == "'":
        return 'texts are written in double quotes: "like this"'
    if char in "“”":
        return 'use straight double quotes (") around texts'
    return None
