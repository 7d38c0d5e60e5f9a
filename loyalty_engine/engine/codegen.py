"""Generate Python source from checked syntax trees.

Only the tree decides what is generated: every literal from the rule file
(numbers, texts, dates, names used as keys) goes into a table of constants
and is referred to as ``_kN``; identifiers in the source are either ours or
field names from the engine's fixed schema. No user text is ever placed in
the generated source, so compiling it cannot run anything a rule file says.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..language import ast
from ..language import types as T
from ..language.checker import CheckedProgram

_CMP = {"==", "!=", "<", "<=", ">", ">="}
_INLINE_DATE_PARTS = {"weekday": "weekday()", "month": "month", "day": "day", "year": "year", "hour": "hour"}
_SAFE_FIELD = set("abcdefghijklmnopqrstuvwxyz_0123456789")


def _safe(name: str) -> str:
    """Schema field names are identifiers we define; refuse anything else outright."""
    if not name or not set(name) <= _SAFE_FIELD or name[0].isdigit():
        raise ValueError(f"not a schema identifier: {name!r}")
    return name


class Constants:
    def __init__(self):
        self.values: dict[str, object] = {}
        self._index: dict[tuple, str] = {}

    def add(self, value, key=None) -> str:
        key = key if key is not None else (type(value).__name__, repr(value))
        name = self._index.get(key)
        if name is None:
            name = f"_k{len(self.values)}"
            self.values[name] = value
            self._index[key] = name
        return name


class Emitter:
    """Appends statements to a function body and returns expressions for nodes."""

    def __init__(self, program: CheckedProgram, consts: Constants):
        self.p = program
        self.k = consts
        self.lines: list[str] = []
        self.depth = 1
        self.n = 0
        self.uses: set[str] = set()
        self.rule_spans: list[tuple[int, int, object]] = []  # (first, end) indexes into lines, per rule

    # -------------------------------------------------------------- plumbing

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextmanager
    def block(self, header: str):
        self.line(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def temp(self, prefix: str = "_t") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def bind(self, code: str) -> str:
        if code.isidentifier():
            return code
        name = self.temp()
        self.line(f"{name} = {code}")
        return name

    # -------------------------------------------------------------- expressions

    def expr(self, node, item: str | None = None) -> tuple[str, bool]:
        """Python expression for ``node`` and whether it may be None."""
        if isinstance(node, ast.Literal):
            if node.value is None:
                return "None", True
            if isinstance(node.value, bool):
                return ("True" if node.value else "False"), False
            if node.kind == "number" and node.value == node.value.to_integral_value() and abs(node.value) < 10**15:
                return repr(int(node.value)), False
            return self.k.add(node.value), False
        if isinstance(node, ast.ListExpr):
            if all(isinstance(i, ast.Literal) and i.value is not None for i in node.items):
                return self.k.add(frozenset(i.value for i in node.items)), False
            parts = [self.expr(i, item)[0] for i in node.items]
            return "(" + "".join(p + ", " for p in parts) + ")", False
        if isinstance(node, ast.Path):
            return self.path(node, item)
        if isinstance(node, ast.Stat):
            self.uses.add("ctx")
            return f"_c.stats.get({self.k.add(node.key)}, _ZERO)", False
        if isinstance(node, ast.Call):
            return self.call(node, item)
        if isinstance(node, ast.Unary):
            code, nullable = self.expr(node.operand, item)
            if node.op == "not":
                return f"(not {code})", False
            if nullable:
                t = self.bind(code)
                return f"(None if {t} is None else -{t})", True
            return f"(-{code})", False
        if isinstance(node, ast.Binary):
            return self.binary(node, item)
        if isinstance(node, ast.ItemTest):
            return self.item_test(node), False
        if isinstance(node, ast.CountItems):
            return self.count_items(node), False
        if isinstance(node, ast.SumItems):
            return self.sum_items(node), False
        raise TypeError(f"cannot compile {node!r}")  # pragma: no cover

    def path(self, node: ast.Path, item: str | None) -> tuple[str, bool]:
        b = self.p.bindings.get(id(node))
        if b is None:
            raise TypeError(f"unresolved name {node.dotted}")  # pragma: no cover - the checker resolves all
        if b.kind == "event":
            self.uses.add("event:" + b.key)
            return f"_ev_{_safe(b.key)}", b.nullable
        if b.kind == "event_attr":
            return f"_e.attributes.get({self.k.add(b.key)})", True
        if b.kind == "item":
            return f"{item}.{_safe(b.key)}", b.nullable
        if b.kind == "member":
            self.uses.add("member")
            return f"_m.{_safe(b.key)}", b.nullable
        if b.kind == "member_ctx":
            self.uses.add("ctx")
            return f"_c.{_safe(b.key)}", True
        if b.kind == "member_attr":
            self.uses.add("member")
            return f"_m.attributes.get({self.k.add(b.key)})", True
        if b.kind == "balance":
            self.uses.add("ctx")
            return f"_c.balances.get({self.k.add(b.key)}, _ZERO)", False
        if b.kind == "today":
            self.uses.add("today")
            return "_today", False
        if b.kind == "now":
            self.uses.add("now")
            return "_now", False
        if b.kind == "const":
            return repr(int(b.key)), False
        raise TypeError(f"unknown binding {b.kind}")  # pragma: no cover

    def call(self, node: ast.Call, item: str | None) -> tuple[str, bool]:
        fn = self.p.schema.functions[node.name.name]
        args = [self.expr(a, item) for a in node.args]
        if fn.name in _INLINE_DATE_PARTS and len(args) == 1:
            code, nullable = args[0]
            arg_type = self.p.type_of(node.args[0])
            if arg_type == T.DATETIME and fn.name != "hour":
                code = f"_to_date({code}, _TZ)"
            attr = _INLINE_DATE_PARTS[fn.name]
            if fn.name == "hour":
                attr = "astimezone(_TZ).hour"
            if nullable:
                t = self.bind(code)
                return f"(None if {t} is None else {t}.{attr})", True
            return f"{code}.{attr}", False
        inline = self._inline_call(fn.name, node, args)
        if inline is not None:
            return inline
        impl = self.k.add(fn.impl, key=("fn", fn.name))
        call_args = [a for a, _ in args]
        if fn.needs_context:
            self.uses.add("scope")
            call_args.insert(0, "_scope")
        nullable_args = [a for a, nullable in args if nullable]
        result_nullable = fn.name in ("score", "min", "max") or bool(nullable_args)
        if nullable_args and not fn.null_safe:
            bound = []
            for a, nullable in args:
                bound.append((self.bind(a), nullable))
            call_args = [b for b, _ in bound]
            if fn.needs_context:
                call_args.insert(0, "_scope")
            guard = " or ".join(f"{b} is None" for b, nullable in bound if nullable)
            return f"(None if {guard} else {impl}({', '.join(call_args)}))", True
        return f"{impl}({', '.join(call_args)})", result_nullable

    def _inline_call(self, name: str, node: ast.Call, args) -> tuple[str, bool] | None:
        """Calls cheap enough to write out in place, for arguments whose run-time type is certain."""
        if len(args) != 1:
            return None
        code, nullable = args[0]
        arg_type = self.p.type_of(node.args[0])
        if name in ("floor", "ceil") and arg_type == T.MONEY:
            mode = "_FLOOR" if name == "floor" else "_CEILING"
            if nullable:
                t = self.bind(code)
                return f"(None if {t} is None else {t}.to_integral_value({mode}))", True
            return f"{code}.to_integral_value({mode})", False
        if name in ("days_since", "days_until") and arg_type == T.DATE:
            self.uses.add("today")
            a, b = ("_today", "{x}") if name == "days_since" else ("{x}", "_today")
            if nullable:
                t = self.bind(code)
                return f"(None if {t} is None else ({a} - {b}).days)".format(x=t), True
            return f"({a} - {b}).days".format(x=code), False
        return None

    def binary(self, node: ast.Binary, item: str | None) -> tuple[str, bool]:
        op = node.op
        if op in ("and", "or"):
            left, _ = self.expr(node.left, item)
            v = self.temp("_b")
            self.line(f"{v} = {left}")
            with self.block(f"if {v}:" if op == "and" else f"if not {v}:"):
                right, _ = self.expr(node.right, item)
                self.line(f"{v} = {right}")
            return v, False
        left, ln = self.expr(node.left, item)
        right, rn = self.expr(node.right, item)
        lt, rt = self.p.type_of(node.left), self.p.type_of(node.right)
        if op in ("in", "not in"):
            return f"({left} {op} {right})", False
        if op in _CMP:
            if {lt, rt} == {T.DATE, T.DATETIME}:
                if lt == T.DATETIME:
                    left = f"_to_date({left}, _TZ)"
                else:
                    right = f"_to_date({right}, _TZ)"
            if op in ("==", "!=") or not (ln or rn):
                return f"({left} {op} {right})", False
            a, b = self.bind(left), self.bind(right)
            guards = [f"{x} is not None" for x, n in ((a, ln), (b, rn)) if n]
            return f"({' and '.join(guards)} and {a} {op} {b})", False
        if op == "/":
            return f"_div({left}, {right})", True
        if lt in (T.DATE, T.DATETIME) and rt == T.NUMBER:
            return f"_date_add({left}, {right}, {1 if op == '+' else -1})", True
        if lt in (T.DATE, T.DATETIME) and rt in (T.DATE, T.DATETIME):
            return f"_date_diff({left}, {right}, _TZ)", True
        if ln or rn:
            a, b = self.bind(left), self.bind(right)
            guard = " or ".join(f"{x} is None" for x, n in ((a, ln), (b, rn)) if n)
            return f"(None if {guard} else {a} {op} {b})", True
        return f"({left} {op} {right})", False

    def _loop(self, condition, body_true: str, init: str) -> str:
        self.uses.add("items")
        v = self.temp("_v")
        it = self.temp("_it")
        self.line(f"{v} = {init}")
        with self.block(f"for {it} in _items:"):
            if condition is None:
                self.line(f"{v} {body_true.format(it=it)}")
            else:
                c, _ = self.expr(condition, it)
                with self.block(f"if {c}:"):
                    self.line(f"{v} {body_true.format(it=it)}")
        return v

    def item_test(self, node: ast.ItemTest) -> str:
        self.uses.add("items")
        v = self.temp("_v")
        it = self.temp("_it")
        want = "True" if node.quantifier == "any" else "False"
        self.line(f"{v} = {'False' if node.quantifier == 'any' else 'True'}")
        with self.block(f"for {it} in _items:"):
            c, _ = self.expr(node.condition, it)
            with self.block(f"if {c}:" if node.quantifier == "any" else f"if not {c}:"):
                self.line(f"{v} = {want}")
                self.line("break")
        return v

    def count_items(self, node: ast.CountItems) -> str:
        step = "+= {it}.quantity" if node.what == "items" else "+= 1"
        return self._loop(node.condition, step, "0")

    def sum_items(self, node: ast.SumItems) -> str:
        self.uses.add("items")
        v = self.temp("_v")
        it = self.temp("_it")
        self.line(f"{v} = _ZERO")
        with self.block(f"for {it} in _items:"):
            if node.condition is not None:
                c, _ = self.expr(node.condition, it)
                self.line(f"if not {c}: continue")
            value, nullable = self.expr(node.value, it)
            self.line(f"{v} += {'_nz(' + value + ')' if nullable else value}")
        return v

    def items_amount(self, condition) -> str:
        """Sum of line amounts, optionally filtered: the source of ``of items where ...``."""
        return self._loop(condition, "+= {it}.amount", "_ZERO")

    def items_quantity(self, condition) -> str:
        return self._loop(condition, "+= {it}.quantity", "0")

    # -------------------------------------------------------------- prologue

    def prologue(self, trigger: bool = False) -> list[str]:
        """Loads hoisted into locals, only those the body uses."""
        out = []
        need_time = self.uses & {"today", "now", "scope"} or any(u.startswith("time") for u in self.uses)
        if trigger:
            out.append("_lt = as_of.astimezone(_TZ)")
        elif need_time:
            out.append("_lt = (as_of if as_of is not None else _e.at).astimezone(_TZ)")
        if need_time or trigger:
            out.append("_today = _lt.date()")
            if "now" in self.uses:
                out.append("_now = _lt")
        if "member" in self.uses:
            out.append("_m = _c.member")
        if "scope" in self.uses:
            out.append("_scope = _Scope(_today, _TZ, _c)")
        if "items" in self.uses:
            out.append("_items = _e.items")
        for use in sorted(self.uses):
            if use.startswith("event:"):
                name = _safe(use[6:])
                out.append(f"_ev_{name} = _e.{name}")
        return ["    " + line for line in out]
