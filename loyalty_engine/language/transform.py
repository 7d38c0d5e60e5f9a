"""Turn Lark parse trees into the frozen nodes of :mod:`ast`."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import attrs
from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from . import ast

_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t"}


def unquote(raw: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw[1:-1])


MAX_DIGITS = 15  # before the decimal point: a quadrillion, more than any amount or count in a program
MAX_DECIMALS = 10


def number_too_long(digits: str) -> tuple[str, str] | None:
    """(message, hint) when a number has more than MAX_DIGITS digits before the point or MAX_DECIMALS after."""
    whole, _, fraction = digits.lstrip("+-").partition(".")
    if len(whole) <= MAX_DIGITS and len(fraction) <= MAX_DECIMALS:
        return None
    shown = digits if len(digits) <= 20 else f"{digits[:8]}...{digits[-4:]}"
    return (
        f"the number {shown} is too long ({len(whole)} digits before the point, {len(fraction)} after)",
        f"numbers in rules have at most {MAX_DIGITS} digits before the decimal point and {MAX_DECIMALS} after it",
    )


_UNIT_BY_TOKEN = {"DAY_UNIT": "day", "WEEK_UNIT": "week", "MONTH_UNIT": "month", "YEAR_UNIT": "year"}


@v_args(meta=True)
class TreeToAst(Transformer):
    def __init__(self, path, reporter, parse_expr=None, line_offset=0, column_offset=0):
        super().__init__(visit_tokens=False)
        self._path = path
        self._reporter = reporter
        self._parse_expr = parse_expr
        self._line_offset = line_offset
        self._column_offset = column_offset

    # -------------------------------------------------------------- entry points

    def _transform_module(self, tree: Tree) -> list:
        try:
            result = self.transform(tree)
        except VisitError as exc:  # unwrap errors raised inside callbacks
            raise exc.orig_exc from None
        return [item for item in result if item is not None]

    def _transform_expr(self, tree: Tree):
        try:
            return self.transform(tree)
        except VisitError as exc:
            raise exc.orig_exc from None

    # -------------------------------------------------------------- helpers

    def _span(self, meta) -> ast.Span:
        line = meta.line + self._line_offset
        end_line = meta.end_line + self._line_offset
        col = meta.column + (self._column_offset if meta.line == 1 else 0)
        end_col = meta.end_column + (self._column_offset if meta.end_line == 1 else 0)
        return ast.Span(self._path, line, col, end_line, end_col)

    def _tspan(self, token: Token) -> ast.Span:
        line = token.line + self._line_offset
        col = token.column + (self._column_offset if token.line == 1 else 0)
        end_col = (token.end_column or token.column + len(token)) + (self._column_offset if token.line == 1 else 0)
        return ast.Span(self._path, line, col, line, end_col)

    def _ident(self, token: Token | None) -> ast.Ident | None:
        if token is None:
            return None
        return ast.Ident(str(token), self._tspan(token))

    def _to_date(self, token: Token) -> dt.date | None:
        try:
            return dt.date.fromisoformat(str(token))
        except ValueError:
            self._reporter.error(self._tspan(token), f"'{token}' is not a valid date", "dates are written YYYY-MM-DD")
            return None

    def _too_long(self, token: Token, digits: str) -> bool:
        """Numbers are at most MAX_DIGITS digits before the point and MAX_DECIMALS after: a documented error.

        Longer ones broke checking (int() refuses strings of over 4,300 digits) or, worse, checked
        clean and made every evaluation fail (a 5,000-digit award overflows the decimal context).
        """
        problem = number_too_long(digits)
        if problem is None:
            return False
        self._reporter.error(self._tspan(token), *problem)
        return True

    def _int(self, token: Token) -> int:
        return 1 if self._too_long(token, str(token)) else int(str(token))

    def _decimal(self, token: Token, digits: str) -> Decimal:
        return Decimal(1) if self._too_long(token, digits) else Decimal(digits)

    def _unit(self, token: Token) -> str:
        return _UNIT_BY_TOKEN[token.type]

    # -------------------------------------------------------------- top level

    def start(self, meta, children):
        return [c for c in children if c is not None and not isinstance(c, Token)]

    def include(self, meta, children):
        return ast.Include(unquote(children[0]), self._span(meta))

    def program(self, meta, children):
        name = unquote(children[0])
        currency = timezone = rounding = None
        balances, expiries, pendings, policies = [], [], [], []
        for child in children[1:]:
            if child is None or isinstance(child, Token):
                continue
            kind, value = child
            if kind == "currency":
                currency = value
            elif kind == "timezone":
                timezone = value
            elif kind == "rounding":
                rounding = value
            elif kind == "balance":
                balances.append(value)
            elif kind == "expiry":
                expiries.append(value)
            elif kind == "pending":
                pendings.append(value)
            elif kind == "policy":
                policies.append(value)
        return ast.ProgramHeader(
            name,
            currency,
            timezone,
            rounding,
            tuple(balances),
            tuple(expiries),
            tuple(pendings),
            self._span(meta),
            tuple(policies),
        )

    def currency(self, meta, children):
        return ("currency", self._ident(children[0]))

    def timezone(self, meta, children):
        return ("timezone", (unquote(children[0]), self._tspan(children[0])))

    def rounding(self, meta, children):
        return ("rounding", self._ident(children[0]))

    def balance(self, meta, children):
        return ("balance", ast.BalanceDecl(self._ident(children[0]), children[1] is not None, self._span(meta)))

    def expiry_after(self, meta, children):
        name, amount, unit, after = children
        after_text = " ".join(str(after).split())
        return (
            "expiry",
            ast.ExpiryPolicy(
                self._ident(name), "after", self._int(amount), self._unit(unit), after_text, self._span(meta)
            ),
        )

    def expiry_year_end(self, meta, children):
        return ("expiry", ast.ExpiryPolicy(self._ident(children[0]), "year_end", 0, "", "", self._span(meta)))

    def expiry_never(self, meta, children):
        return ("expiry", ast.ExpiryPolicy(self._ident(children[0]), "never", 0, "", "", self._span(meta)))

    def pending(self, meta, children):
        return ("pending", ast.PendingPolicy(self._ident(children[0]), self._int(children[1]), self._span(meta)))

    def policy_negative(self, meta, children):
        return ("policy", ast.Policy("negative", self._ident(children[0]), "yes", self._span(meta)))

    def policy_transfer(self, meta, children):
        return ("policy", ast.Policy("transfer", self._ident(children[0]), "yes", self._span(meta)))

    def policy_refunds(self, meta, children):
        action, full = children
        value = "keep" if str(action) == "keep" else ("full" if full is not None else "reverse")
        return ("policy", ast.Policy("refunds", None, value, self._span(meta)))

    # -------------------------------------------------------------- tiers

    def tiers(self, meta, children):
        metric, window, *rest = children
        levels = tuple(c for c in rest if isinstance(c, ast.TierLevel))
        reviews = [c for c in rest if isinstance(c, ast.TierReview)]
        return ast.Tiers(self._ident(metric), window, levels, reviews[-1] if reviews else None, self._span(meta))

    def tier_level(self, meta, children):
        name, threshold, mult = children
        multiplier = self._decimal(mult, str(mult)[1:]) if mult is not None else None
        return ast.TierLevel(self._ident(name), threshold.value, multiplier, self._span(meta))

    def review(self, meta, children):
        tokens = [c for c in children if c is not None]
        every, every_unit = tokens[0], tokens[1]
        grace, grace_unit = (tokens[2], tokens[3]) if len(tokens) >= 4 else (None, None)
        every_months = _months(self._int(every), self._unit(every_unit))
        grace_months = _months(self._int(grace), self._unit(grace_unit)) if grace is not None else 0
        return ast.TierReview(every_months, grace_months, self._span(meta))

    def window_rolling(self, meta, children):
        amount, unit = children[-2], children[-1]
        return ast.Window("rolling", self._int(amount), self._unit(unit))

    def window_calendar(self, meta, children):
        return ast.Window("calendar", 0, str(children[0]))

    def window_lifetime(self, meta, children):
        return ast.Window("lifetime")

    # -------------------------------------------------------------- rules

    def rule(self, meta, children):
        name, event, condition, *body = children
        parts = self._body(body)
        return ast.Rule(
            name=unquote(name),
            event=self._ident(event),
            condition=condition,
            actions=parts["actions"],
            limits=parts["limits"],
            budgets=parts["budgets"],
            priority=parts["priority"],
            valid_from=parts["valid_from"],
            valid_to=parts["valid_to"],
            group=parts["group"],
            campaign=None,
            span=self._span(meta),
            name_span=self._tspan(name),
        )

    def _body(self, body):
        parts = {
            "actions": [],
            "limits": [],
            "budgets": [],
            "priority": 0,
            "valid_from": None,
            "valid_to": None,
            "group": None,
            "rules": [],
        }
        for child in body:
            if child is None or isinstance(child, Token):
                continue
            if isinstance(child, ast.Limit):
                parts["limits"].append(child)
            elif isinstance(child, ast.Budget):
                parts["budgets"].append(child)
            elif isinstance(child, ast.Rule):
                parts["rules"].append(child)
            elif isinstance(child, tuple) and child[0] == "priority":
                parts["priority"] = child[1]
            elif isinstance(child, tuple) and child[0] == "valid":
                parts["valid_from"], parts["valid_to"] = child[1], child[2]
            elif isinstance(child, tuple) and child[0] == "group":
                parts["group"] = child[1]
            else:
                parts["actions"].append(child)
        for key in ("actions", "limits", "budgets", "rules"):
            parts[key] = tuple(parts[key])
        return parts

    def campaign(self, meta, children):
        name, start, end, *body = children
        parts = self._body(body)
        cname = unquote(name)
        rules = tuple(attrs.evolve(r, campaign=cname) for r in parts["rules"])
        return ast.Campaign(
            cname,
            self._to_date(start) if start is not None else None,
            self._to_date(end) if end is not None else None,
            parts["budgets"],
            rules,
            self._span(meta),
        )

    def group(self, meta, children):
        return ast.GroupDecl(unquote(children[0]), str(children[1]), self._span(meta))

    def priority(self, meta, children):
        return ("priority", children[0])

    def signed_int(self, meta, children):
        return self._int(children[0])

    def valid_from(self, meta, children):
        start, end = children
        return ("valid", self._to_date(start), self._to_date(end) if end is not None else None)

    def valid_until(self, meta, children):
        return ("valid", None, self._to_date(children[0]))

    def in_group(self, meta, children):
        return ("group", (unquote(children[0]), self._tspan(children[0])))

    def limit(self, meta, children):
        times, (period, days) = children
        return ast.Limit(times, period, days, self._span(meta))

    def times(self, meta, children):
        token = children[0]
        return 1 if str(token) == "once" else self._int(token)

    def period_calendar(self, meta, children):
        return (str(children[0]), 0)

    def period_rolling(self, meta, children):
        amount, unit = children
        return ("rolling", _days(self._int(amount), self._unit(unit)))

    def budget(self, meta, children):
        return ast.Budget(self._int(children[0]), self._ident(children[1]), self._span(meta))

    # -------------------------------------------------------------- actions

    def award(self, meta, children):
        amount, unit, rate, up_to = children
        kind = per = currency = source = items_filter = None
        items_source = False
        if rate is not None:
            kind, per, currency, source, items_filter, items_source = rate
        return ast.Award(
            amount, self._ident(unit), kind, per, currency, source, items_filter, items_source, up_to, self._span(meta)
        )

    def award_percent(self, meta, children):
        percent, source, unit, up_to = children
        value = self._decimal(percent, str(percent)[:-1]) / 100
        amount = ast.Literal(value, "percent", self._tspan(percent))
        src, items_filter, items_source = source
        return ast.Award(
            amount, self._ident(unit), "percent", None, None, src, items_filter, items_source, up_to, self._span(meta)
        )

    def rate_money(self, meta, children):
        per, currency, source = children
        src, items_filter, items_source = source
        return ("money", per.value, self._ident(currency), src, items_filter, items_source)

    def rate_item(self, meta, children):
        return ("item", None, None, None, children[0], True)

    def source(self, meta, children):
        return (children[0], None, False)

    def items_source(self, meta, children):
        return (None, children[0], True)

    def up_to(self, meta, children):
        return self._int(children[0])

    def multiply(self, meta, children):
        return ast.Multiply(self._ident(children[0]), children[1], self._span(meta))

    def cap(self, meta, children):
        unit, amount, period = children
        return ast.Cap(
            self._ident(unit), self._int(amount), str(period) if period is not None else "transaction", self._span(meta)
        )

    def issue(self, meta, children):
        return ast.IssueCoupon(self._ident(children[0]), self._span(meta))

    def send(self, meta, children):
        channel, body, subject = children
        return ast.Send(
            self._ident(channel),
            self._template(body),
            self._template(subject) if subject is not None else None,
            self._span(meta),
        )

    def set_tier(self, meta, children):
        return ast.SetTier(self._ident(children[0]), self._span(meta))

    def reward(self, meta, children):
        name, *args = children
        return ast.Reward(self._ident(name), tuple(a for a in args if a is not None), self._span(meta))

    def reward_arg(self, meta, children):
        return (self._ident(children[0]), children[1])

    def _template(self, token: Token) -> ast.Template:
        raw = str(token)[1:-1]
        parts: list = []
        literal: list[str] = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                literal.append(_ESCAPES.get(raw[i + 1], raw[i + 1]))
                i += 2
                continue
            if ch == "{" and raw[i + 1 : i + 2] == "{":
                literal.append("{")
                i += 2
                continue
            if ch == "}" and raw[i + 1 : i + 2] == "}":
                literal.append("}")
                i += 2
                continue
            if ch == "{":
                close = raw.find("}", i + 1)
                column = token.column + (self._column_offset if token.line == 1 else 0) + 1 + i
                line = token.line + self._line_offset
                if close == -1:
                    self._reporter.error(
                        ast.Span(self._path, line, column, line, column + 1),
                        "'{' opens a placeholder that is never closed",
                        "close it with '}', or write '{{' for a literal brace",
                    )
                    literal.append(raw[i:])
                    break
                inner = raw[i + 1 : close]
                if literal:
                    parts.append("".join(literal))
                    literal = []
                expr = self._parse_expr(inner, line, column + 1) if self._parse_expr else None
                if expr is not None:
                    parts.append(expr)
                i = close + 1
                continue
            literal.append(ch)
            i += 1
        if literal:
            parts.append("".join(literal))
        return ast.Template(unquote(str(token)), tuple(parts), self._tspan(token))

    # -------------------------------------------------------------- coupons

    def coupon(self, meta, children):
        code, title, *body = children
        fields = {
            "discount_kind": None,
            "discount_value": None,
            "valid_days": None,
            "valid_until": None,
            "min_spend": None,
            "categories": (),
            "per_member": None,
            "total": None,
        }
        for child in body:
            if isinstance(child, tuple):
                fields.update(child[1])
        return ast.CouponTemplate(
            self._ident(code), unquote(title) if title is not None else None, span=self._span(meta), **fields
        )

    def discount_percent(self, meta, children):
        value = self._decimal(children[0], str(children[0])[:-1])
        return ("discount", {"discount_kind": "percent", "discount_value": value})

    def discount_amount(self, meta, children):
        return ("discount", {"discount_kind": "amount", "discount_value": children[0].value})

    def discount_free_item(self, meta, children):
        return ("discount", {"discount_kind": "free_item", "discount_value": unquote(children[0])})

    def coupon_valid_days(self, meta, children):
        return ("valid", {"valid_days": self._int(children[0])})

    def coupon_valid_until(self, meta, children):
        return ("valid", {"valid_until": self._to_date(children[0])})

    def min_spend(self, meta, children):
        return ("min", {"min_spend": children[0].value})

    def categories(self, meta, children):
        values = []
        for item in children[0].items:
            if isinstance(item, ast.Literal) and item.kind == "text":
                values.append(item.value)
            else:
                self._reporter.error(item.span, "coupon categories are texts in quotes", 'e.g. ["coffee", "tea"]')
        return ("categories", {"categories": tuple(values)})

    def coupon_limit_member(self, meta, children):
        return ("limit", {"per_member": self._int(children[0])})

    def coupon_limit_total(self, meta, children):
        return ("total", {"total": self._int(children[0])})

    # -------------------------------------------------------------- triggers

    def trigger(self, meta, children):
        name, (schedule, arg), condition, *body = children
        parts = self._body(body)
        return ast.Trigger(
            name=unquote(name),
            schedule=schedule,
            schedule_arg=arg,
            condition=condition,
            actions=parts["actions"],
            limits=parts["limits"],
            priority=parts["priority"],
            valid_from=parts["valid_from"],
            valid_to=parts["valid_to"],
            span=self._span(meta),
            name_span=self._tspan(name),
        )

    def daily(self, meta, children):
        return ("daily", None)

    def weekly(self, meta, children):
        return ("weekly", self._ident(children[0]))

    def monthly(self, meta, children):
        return ("monthly", self._int(children[0]))

    # -------------------------------------------------------------- declarations

    def event_decl(self, meta, children):
        name, *fields = children
        return ast.EventDecl(self._ident(name), tuple(f for f in fields if f is not None), self._span(meta))

    def member_fields(self, meta, children):
        return ast.MemberFields(tuple(f for f in children if f is not None), self._span(meta))

    def field_decl(self, meta, children):
        name, (type_name, element) = children
        return ast.FieldDecl(self._ident(name), type_name, element, self._span(meta))

    def type_name(self, meta, children):
        return (self._ident(children[0]), None)

    def list_type(self, meta, children):
        return (self._ident(children[0]), self._ident(children[1]))

    # -------------------------------------------------------------- expressions

    def or_op(self, meta, children):
        return self._binary(meta, "or", children[0], children[1])

    def and_op(self, meta, children):
        return self._binary(meta, "and", children[0], children[1])

    def _binary(self, meta, op, left, right, op_span=None):
        return ast.Binary(op, left, right, self._span(meta), op_span or self._span(meta))

    def not_op(self, meta, children):
        return ast.Unary("not", children[0], self._span(meta))

    def neg(self, meta, children):
        return ast.Unary("neg", children[0], self._span(meta))

    def any_item(self, meta, children):
        return ast.ItemTest("any", children[0], self._span(meta))

    def all_items(self, meta, children):
        return ast.ItemTest("all", children[0], self._span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return self._binary(meta, str(op), left, right, self._tspan(op))

    def arith(self, meta, children):
        left, op, right = children
        return self._binary(meta, str(op), left, right, self._tspan(op))

    def in_op(self, meta, children):
        return self._binary(meta, "in", children[0], children[1])

    def not_in_op(self, meta, children):
        return self._binary(meta, "not in", children[0], children[1])

    def number(self, meta, children):
        return ast.Literal(self._decimal(children[0], str(children[0])), "number", self._span(meta))

    def percent(self, meta, children):
        return ast.Literal(self._decimal(children[0], str(children[0])[:-1]) / 100, "percent", self._span(meta))

    def string(self, meta, children):
        return ast.Literal(unquote(children[0]), "text", self._span(meta))

    def date(self, meta, children):
        return ast.Literal(self._to_date(children[0]), "date", self._span(meta))

    def true(self, meta, children):
        return ast.Literal(True, "bool", self._span(meta))

    def false(self, meta, children):
        return ast.Literal(False, "bool", self._span(meta))

    def none(self, meta, children):
        return ast.Literal(None, "none", self._span(meta))

    def path(self, meta, children):
        return ast.Path(tuple(self._ident(t) for t in children), self._span(meta))

    def call(self, meta, children):
        name, *args = children
        return ast.Call(self._ident(name), tuple(a for a in args if a is not None), self._span(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None and not isinstance(c, Token)), self._span(meta))

    def stat(self, meta, children):
        return ast.Stat(self._ident(children[0]), children[1], self._span(meta))

    def count_items(self, meta, children):
        return ast.CountItems(str(children[0]), children[1], self._span(meta))

    def sum_items(self, meta, children):
        return ast.SumItems(children[0], children[1], self._span(meta))


def _months(amount: int, unit: str) -> int:
    return {"day": 0, "week": 0, "month": amount, "year": amount * 12}[unit] or max(1, amount // 30)


def _days(amount: int, unit: str) -> int:
    return amount * {"day": 1, "week": 7, "month": 30, "year": 365}[unit]
