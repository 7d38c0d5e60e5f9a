"""Check a parsed program: resolve every name against the schema, check types, warn.

The result, a :class:`CheckedProgram`, is what the compiler turns into code:
declarations merged across included files, rules in evaluation order, and side
tables giving the type of every expression and what every name refers to.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from decimal import Decimal

from attrs import define, field

from . import ast
from . import types as T
from .diagnostics import Reporter, did_you_mean
from .schema import CORE_EVENT_FIELDS, NON_NULL_EVENT_FIELDS, WEEKDAYS, Schema

DEFAULT_BALANCE = "points"


@functools.lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """The IANA names of the time zone database, read once.

    A name from a rule file is looked up here before ZoneInfo opens anything: an unknown one used
    to make ZoneInfo try a file of that name and available_timezones() re-read the database (~25 ms,
    files opened under an audit hook) on every check: rule files must not make the checker open files.
    """
    return frozenset(zoneinfo.available_timezones())


@define
class BalanceInfo:
    name: str
    money: bool = False
    expiry: ast.ExpiryPolicy | None = None
    pending_days: int = 0
    may_go_negative: bool = False
    transferable: bool = False


@define
class Binding:
    """What a name in an expression refers to: ``kind`` and ``key``."""

    kind: str  # event | event_attr | item | member | member_ctx | member_attr | balance | today | now | const
    key: object
    type: str
    nullable: bool = True


@define
class CheckedProgram:
    name: str
    currency: str
    timezone: str
    rounding: str
    balances: dict[str, BalanceInfo]
    tiers: ast.Tiers | None
    rules: list[ast.Rule]
    triggers: list[ast.Trigger]
    coupons: dict[str, ast.CouponTemplate]
    groups: dict[str, ast.GroupDecl]
    campaigns: dict[str, ast.Campaign]
    schema: Schema
    types: dict[int, str] = field(factory=dict)
    bindings: dict[int, Binding] = field(factory=dict)
    score_names: dict[int, str] = field(factory=dict)
    refund_bonuses: str = "full"  # "full": on a full return only | "reverse": pro rata | "keep"

    def type_of(self, node) -> str:
        return self.types.get(id(node), T.ANY)

    def balance_for_unit(self, unit: str) -> str | None:
        return resolve_balance(unit, self.balances)


def resolve_balance(unit: str, balances) -> str | None:
    if unit in balances:
        return unit
    for name in balances:
        if name.endswith("s") and unit == name[:-1]:
            return name
    return None


@define
class _Scope:
    event_type: str | None
    event_fields: dict[str, str] | None
    in_item: bool = False
    where: str = "rule"


class Checker:
    def __init__(self, modules: list[ast.Module], schema: Schema, reporter: Reporter, partial: bool = False):
        self.modules = modules
        self.schema = schema.copy()
        self.r = reporter
        self.partial = partial  # some declarations were lost to syntax errors: hold back unknown-name errors
        self.types: dict[int, str] = {}
        self.bindings: dict[int, Binding] = {}
        self.score_names: dict[int, str] = {}
        self.refund_bonuses = "full"

    # -------------------------------------------------------------- driver

    def check(self) -> CheckedProgram | None:
        items = [item for m in self.modules for item in m.items]
        headers = [i for i in items if isinstance(i, ast.ProgramHeader)]
        if not headers:
            if not self.partial:
                path = self.modules[0].path if self.modules else "<program>"
                self.r.error(
                    ast.Span(path, 1, 1, 1, 1),
                    "the program has no header",
                    'start it with: program "Name" { currency CNY  timezone "Asia/Shanghai" }',
                )
            header = None
        else:
            header = headers[0]
            for extra in headers[1:]:
                self.r.error(extra.span, "a program has exactly one 'program' header", "remove this one")

        currency, tz, rounding, balances = self._header(header)
        for item in items:
            if isinstance(item, ast.EventDecl):
                self._event_decl(item)
            elif isinstance(item, ast.MemberFields):
                self._member_fields(item)

        self.balances = balances
        self.currency = currency
        groups = self._unique(
            [i for i in items if isinstance(i, ast.GroupDecl)], lambda g: g.name, "group", lambda g: g.span
        )
        coupons = self._unique(
            [i for i in items if isinstance(i, ast.CouponTemplate)],
            lambda c: c.code.name,
            "coupon",
            lambda c: c.code.span,
        )
        self.groups, self.coupons = groups, coupons
        for coupon in coupons.values():
            self._coupon(coupon)

        tiers_blocks = [i for i in items if isinstance(i, ast.Tiers)]
        tiers = tiers_blocks[0] if tiers_blocks else None
        for extra in tiers_blocks[1:]:
            self.r.error(extra.span, "a program has one 'tiers' block", "merge the levels into the first block")
        self.tiers = tiers
        if tiers:
            self._tiers(tiers)

        campaigns = self._unique(
            [i for i in items if isinstance(i, ast.Campaign)], lambda c: c.name, "campaign", lambda c: c.span
        )
        rules: list[ast.Rule] = []
        for item in items:
            if isinstance(item, ast.Rule):
                rules.append(item)
            elif isinstance(item, ast.Campaign):
                self._campaign(item)
                rules.extend(item.rules)
        self.campaigns = campaigns
        seen: dict[str, ast.Rule] = {}
        for rule in rules:
            if rule.name in seen:
                first = seen[rule.name]
                self.r.warning(
                    rule.name_span,
                    f"duplicate rule name '{rule.name}' (also at line {first.span.line})",
                    "give each rule its own name, so explanations and limits can tell them apart",
                )
            else:
                seen[rule.name] = rule
            self._rule(rule)
        ordered = sorted(enumerate(rules), key=lambda p: (-p[1].priority, p[0]))
        rules = [r for _, r in ordered]
        self._shadowing(rules)

        triggers = [i for i in items if isinstance(i, ast.Trigger)]
        names: dict[str, ast.Trigger] = {}
        for trig in triggers:
            if trig.name in names:
                self.r.warning(trig.name_span, f"duplicate trigger name '{trig.name}'")
            names[trig.name] = trig
            self._trigger(trig)
        triggers = [t for _, t in sorted(enumerate(triggers), key=lambda p: (-p[1].priority, p[0]))]

        return CheckedProgram(
            name=header.name if header else "",
            currency=currency,
            timezone=tz,
            rounding=rounding,
            balances=balances,
            tiers=tiers,
            rules=rules,
            triggers=triggers,
            coupons=coupons,
            groups=groups,
            campaigns=campaigns,
            schema=self.schema,
            types=self.types,
            bindings=self.bindings,
            score_names=self.score_names,
            refund_bonuses=self.refund_bonuses,
        )

    def _unique(self, decls, key, what, span):
        out = {}
        for decl in decls:
            name = key(decl)
            if name in out:
                self.r.error(span(decl), f"{what} '{name}' is declared twice (first at line {span(out[name]).line})")
            else:
                out[name] = decl
        return out

    # -------------------------------------------------------------- header

    def _header(self, header: ast.ProgramHeader | None):
        currency, tz, rounding = "", "UTC", "floor"
        balances = {DEFAULT_BALANCE: BalanceInfo(DEFAULT_BALANCE)}
        if header is None:
            return currency, tz, rounding, balances
        if header.currency is None:
            self.r.error(header.span, "the program does not name its currency", "add a line such as: currency CNY")
        else:
            currency = header.currency.name
            if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
                self.r.warning(
                    header.currency.span,
                    f"'{currency}' is not an ISO 4217 currency code",
                    "currency codes are three capital letters, e.g. CNY, USD, EUR",
                )
        if header.timezone is None:
            self.r.error(
                header.span,
                "the program does not name its timezone",
                'add a line such as: timezone "Asia/Shanghai" (days, weekdays and birthdays are local)',
            )
        else:
            name, span = header.timezone
            try:
                if name not in known_timezones():
                    raise zoneinfo.ZoneInfoNotFoundError(name)
                zoneinfo.ZoneInfo(name)
                tz = name
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.r.error(
                    span,
                    f"unknown timezone '{name}'",
                    did_you_mean(name, known_timezones())
                    or "use an IANA name such as 'Asia/Shanghai' or 'Europe/Paris'",
                )
        if header.rounding is not None:
            if header.rounding.name in self.schema.rounding_modes:
                rounding = header.rounding.name
            else:
                self.r.error(
                    header.rounding.span,
                    f"unknown rounding mode '{header.rounding.name}'",
                    did_you_mean(header.rounding.name, self.schema.rounding_modes)
                    or "choose one of: " + ", ".join(self.schema.rounding_modes),
                )
        for decl in header.balances:
            if decl.name.name in balances:
                self.r.error(decl.name.span, f"balance '{decl.name.name}' is declared twice")
            else:
                balances[decl.name.name] = BalanceInfo(decl.name.name, money=decl.money)
        for policy in header.expiries:
            info = self._balance_ref(policy.balance, balances)
            if info:
                info.expiry = policy
        for policy in header.pendings:
            info = self._balance_ref(policy.balance, balances)
            if info:
                info.pending_days = policy.days
        for policy in header.policies:
            if policy.kind == "refunds":
                self.refund_bonuses = policy.value
                continue
            info = self._balance_ref(policy.balance, balances)
            if info and policy.kind == "negative":
                info.may_go_negative = True
            elif info:
                info.transferable = True
        return currency, tz, rounding, balances

    def _balance_ref(self, ident: ast.Ident, balances=None) -> BalanceInfo | None:
        balances = balances if balances is not None else self.balances
        name = resolve_balance(ident.name, balances)
        if name is None:
            self.r.error(
                ident.span,
                f"unknown balance '{ident.name}'",
                did_you_mean(ident.name, balances)
                or "declare it in the program header, e.g. balance stamps (points always exists)",
            )
            return None
        return balances[name]

    # -------------------------------------------------------------- declarations

    def _type_name(self, decl: ast.FieldDecl) -> str:
        base = T.TYPE_NAMES.get(decl.type_name.name)
        if decl.element is not None:
            element = T.TYPE_NAMES.get(decl.element.name)
            if decl.type_name.name != "list" or element is None:
                bad = decl.element if element is None else decl.type_name
                self.r.error(bad.span, f"unknown type '{bad.name}'", "write e.g. 'list of text'")
                return T.ANY
            return T.list_of(element)
        if base is None:
            self.r.error(
                decl.type_name.span,
                f"unknown type '{decl.type_name.name}'",
                did_you_mean(decl.type_name.name, T.TYPE_NAMES)
                or "types are: text, number, money, boolean, date, datetime, list of text",
            )
            return T.ANY
        return base

    def _event_decl(self, decl: ast.EventDecl) -> None:
        fields = {}
        for f in decl.fields:
            if f.name.name in fields:
                self.r.error(f.name.span, f"field '{f.name.name}' is declared twice")
            fields[f.name.name] = self._type_name(f)
        self.schema.add_event_type(decl.name.name, fields)

    def _member_fields(self, decl: ast.MemberFields) -> None:
        for f in decl.fields:
            if f.name.name in self.schema.member_fields or f.name.name in self.schema.member_context_fields:
                self.r.error(f.name.span, f"'{f.name.name}' is a built-in member field", "choose another name")
                continue
            self.schema.member_attributes[f.name.name] = self._type_name(f)

    def _coupon(self, coupon: ast.CouponTemplate) -> None:
        if coupon.discount_kind is None:
            self.r.error(
                coupon.code.span,
                f"coupon {coupon.code.name} does not say what it gives",
                "add e.g. 'discount 10%', 'discount 20' or 'free item \"LATTE\"'",
            )
        if coupon.discount_kind == "percent" and not (0 < coupon.discount_value <= 100):
            self.r.error(coupon.span, f"coupon {coupon.code.name}: a discount must be between 0% and 100%")
        if coupon.valid_days is None and coupon.valid_until is None:
            self.r.warning(
                coupon.code.span,
                f"coupon {coupon.code.name} never expires",
                "add 'valid 30 days' or 'valid until 2026-12-31' unless that is intended",
            )

    def _tiers(self, tiers: ast.Tiers) -> None:
        if tiers.metric.name not in self.schema.stats:
            self.r.error(
                tiers.metric.span,
                f"unknown qualification metric '{tiers.metric.name}'",
                did_you_mean(tiers.metric.name, self.schema.stats) or "choose one of: " + ", ".join(self.schema.stats),
            )
        if not tiers.levels:
            self.r.error(tiers.span, "the tiers block has no levels", "add e.g. 'member from 0'")
            return
        names: set[str] = set()
        previous: Decimal | None = None
        for level in tiers.levels:
            if level.name.name in names:
                self.r.error(level.name.span, f"tier '{level.name.name}' is listed twice")
            names.add(level.name.name)
            if previous is not None and level.threshold <= previous:
                self.r.error(
                    level.span,
                    f"tier '{level.name.name}' starts at {level.threshold}, not above the tier before it ({previous})",
                    "list tiers from the lowest threshold to the highest",
                )
            previous = level.threshold
            if level.multiplier is not None and level.multiplier <= 0:
                self.r.error(level.span, "an earn multiplier must be above zero")
        if tiers.levels[0].threshold != 0:
            self.r.warning(
                tiers.levels[0].span,
                f"the lowest tier starts at {tiers.levels[0].threshold}; members below it have no tier",
                "start the first tier 'from 0'",
            )

    def tier_names(self) -> list[str]:
        return [lvl.name.name for lvl in self.tiers.levels] if self.tiers else []

    def _campaign(self, campaign: ast.Campaign) -> None:
        if campaign.valid_from and campaign.valid_to and campaign.valid_to < campaign.valid_from:
            self.r.error(campaign.span, f"campaign '{campaign.name}' ends before it starts")
        for budget in campaign.budgets:
            self._budget(budget)

    def _budget(self, budget: ast.Budget) -> None:
        if budget.unit.name not in ("coupons", "coupon"):
            self._balance_ref(budget.unit)

    # -------------------------------------------------------------- rules and triggers

    def _rule(self, rule: ast.Rule) -> None:
        fields = self.schema.event_types.get(rule.event.name)
        if fields is None:
            self.r.error(
                rule.event.span,
                f"unknown event type '{rule.event.name}'",
                did_you_mean(rule.event.name, self.schema.event_types)
                or "declare it, e.g.: event review { rating: number }",
            )
        scope = _Scope(rule.event.name, fields if fields is not None else None)
        if fields is None:
            scope.event_fields = None
            scope.where = "unknown-event"
        if rule.condition is not None:
            self._condition(rule.condition, scope)
        if rule.valid_from and rule.valid_to and rule.valid_to < rule.valid_from:
            self.r.error(rule.span, f"rule '{rule.name}' is valid until a date before it starts")
        if rule.group is not None and rule.group[0] not in self.groups and not self.partial:
            self.r.error(
                rule.group[1],
                f"unknown group '{rule.group[0]}'",
                did_you_mean(rule.group[0], self.groups) or f'declare it: group "{rule.group[0]}" pick best',
            )
        for budget in rule.budgets:
            self._budget(budget)
        if not rule.actions:
            self.r.warning(rule.name_span, f"rule '{rule.name}' has no action", "add e.g. 'award 10 points'")
        for action in rule.actions:
            self._action(action, scope, rule.name)
        self._contradictions(rule.condition, rule.name, rule.name_span)

    def _trigger(self, trig: ast.Trigger) -> None:
        scope = _Scope(None, None, where="trigger")
        if trig.schedule == "weekly":
            day = trig.schedule_arg
            if day.name not in WEEKDAYS:
                self.r.error(
                    day.span,
                    f"'{day.name}' is not a day of the week",
                    did_you_mean(day.name, WEEKDAYS) or "write e.g. weekly on monday",
                )
        if trig.schedule == "monthly" and not 1 <= trig.schedule_arg <= 31:
            self.r.error(trig.span, "a monthly trigger runs on a day from 1 to 31")
        if trig.condition is not None:
            self._condition(trig.condition, scope)
        if not trig.limits:
            self.r.warning(
                trig.name_span,
                f"trigger '{trig.name}' has no limit, so it fires on every run while its condition holds",
                "add e.g. 'limit once per 90 days'",
            )
        for action in trig.actions:
            if isinstance(action, ast.Award) and action.rate is not None:
                self.r.error(action.span, "a trigger has no purchase to earn on", "award a fixed amount")
                continue
            if isinstance(action, (ast.Multiply, ast.Cap)):
                self.r.error(action.span, "triggers can award, issue coupons, send messages and set tiers only")
                continue
            self._action(action, scope, trig.name)
        self._contradictions(trig.condition, trig.name, trig.name_span)

    def _condition(self, expr, scope: _Scope) -> None:
        t = self.expr(expr, scope)
        if t not in (T.BOOL, T.ANY):
            self.r.error(
                expr.span,
                f"a condition must be true or false, but this is a {t}",
                "compare it with something, e.g. net_amount >= 100",
            )

    # -------------------------------------------------------------- actions

    def _action(self, action, scope: _Scope, owner: str) -> None:
        if isinstance(action, ast.Award):
            self._award(action, scope)
        elif isinstance(action, ast.Multiply):
            self._balance_ref(action.unit)
            t = self.expr(action.factor, scope)
            if t not in (T.NUMBER, T.ANY):
                self.r.error(action.factor.span, f"a multiplier is a number, but this is a {t}")
            elif isinstance(action.factor, ast.Literal) and action.factor.value is not None:
                if action.factor.value <= 0:
                    self.r.error(action.factor.span, "a multiplier must be above zero")
        elif isinstance(action, ast.Cap):
            self._balance_ref(action.unit)
        elif isinstance(action, ast.IssueCoupon):
            if action.coupon.name not in self.coupons and not self.partial:
                self.r.error(
                    action.coupon.span,
                    f"unknown coupon '{action.coupon.name}'",
                    did_you_mean(action.coupon.name, self.coupons)
                    or f"declare it: coupon {action.coupon.name} {{ discount 10%; valid 30 days }}",
                )
        elif isinstance(action, ast.Send):
            channel = self.schema.channels.get(action.channel.name)
            if channel is None:
                self._unknown(
                    action.channel.span,
                    "channel",
                    action.channel.name,
                    f"unknown channel '{action.channel.name}'",
                    did_you_mean(action.channel.name, self.schema.channels)
                    or "channels: " + ", ".join(sorted(self.schema.channels)),
                )
            elif action.subject is not None and not channel.subject:
                self.r.error(action.subject.span, f"messages on '{channel.name}' have no subject")
            self._template(action.body, scope)
            if action.subject is not None:
                self._template(action.subject, scope)
        elif isinstance(action, ast.SetTier):
            names = self.tier_names()
            if action.tier.name not in names:
                self.r.error(
                    action.tier.span,
                    f"unknown tier '{action.tier.name}'",
                    did_you_mean(action.tier.name, names)
                    or ("tiers: " + ", ".join(names) if names else "the program has no tiers block"),
                )
        elif isinstance(action, ast.Reward):
            self._reward(action, scope)

    def _award(self, award: ast.Award, scope: _Scope) -> None:
        info = self._balance_ref(award.unit)
        t = self.expr(award.amount, scope)
        if not T.is_numeric(t):
            self.r.error(award.amount.span, f"the amount to award must be a number, but this is a {t}")
        if award.rate is None:
            if info is not None and t == T.MONEY and not info.money:
                self.r.error(
                    award.amount.span,
                    f"this is a money amount, but '{info.name}' counts points",
                    f"to earn per amount write: award 1 {award.unit.name} per 1 {self.currency or 'CNY'} of net_amount",
                )
            return
        if award.rate in ("money", "percent", "item") and scope.event_fields is not None:
            if "items" not in scope.event_fields and (award.items_source or award.rate == "item"):
                self.r.error(award.span, f"'{scope.event_type}' events have no items")
        if award.rate == "money":
            if award.per is not None and award.per <= 0:
                self.r.error(award.span, "the amount after 'per' must be above zero")
            if award.currency is not None and self.currency and award.currency.name != self.currency:
                self.r.error(
                    award.currency.span,
                    f"this program's currency is {self.currency}, not {award.currency.name}",
                    f"write: per 1 {self.currency}",
                )
        if award.source is not None:
            st = self.expr(award.source, scope)
            if st not in (T.MONEY, T.ANY):
                hint = None
                if st == T.NUMBER:
                    hint = "to award per unit, write e.g. award 10 points per item where ..."
                self.r.error(award.source.span, f"points are earned on a money amount, but this is a {st}", hint)
        if award.items_filter is not None:
            self._condition(award.items_filter, _Scope(scope.event_type, scope.event_fields, True, scope.where))

    def _unknown(self, span, kind: str, name: str, message: str, hint: str | None) -> None:
        """Report an unknown name; when a known plugin provides it, say which one to install."""
        from ..known_plugins import missing_plugin

        plugins = self.schema.plugins
        found = missing_plugin(kind, name, plugins)
        if found is not None:
            message, hint = found
        elif plugins is not None and plugins.failures and not (hint or "").startswith("did you mean"):
            # the name may well come from a plugin that is installed but broken: say so instead of only "unknown"
            broken = "; ".join(f"'{f.name}' ({f.error})" for f in plugins.failures)
            hint = (f"{hint}; " if hint else "") + f"a plugin failed to load, see 'loyalty plugins': {broken}"
        self.r.error(span, message, hint)

    def _reward(self, reward: ast.Reward, scope: _Scope) -> None:
        name = reward.reward_type.name
        spec = self.schema.reward_types.get(name)
        if spec is not None and spec.keyword:
            self.r.error(reward.reward_type.span, f"'{name}' is a built-in effect: write it as '{spec.keyword} ...'")
            spec = None
        elif spec is None:
            usable = [n for n, t in self.schema.reward_types.items() if not t.keyword]
            self._unknown(
                reward.reward_type.span,
                "reward type",
                name,
                f"unknown reward type '{name}'",
                did_you_mean(name, usable) or "reward types come from plugins; install the plugin that provides it",
            )
        if spec is None:
            for _, value in reward.args:
                self.expr(value, scope)
            return
        given = set()
        for name, value in reward.args:
            t = self.expr(value, scope)
            expected = spec.params.get(name.name)
            if expected is None:
                self.r.error(
                    name.span,
                    f"reward '{spec.name}' has no argument '{name.name}'",
                    did_you_mean(name.name, spec.params) or "arguments: " + ", ".join(spec.params),
                )
                continue
            given.add(name.name)
            if not _assignable(t, expected):
                self.r.error(value.span, f"'{name.name}' must be a {expected}, but this is a {t}")
        missing = sorted(spec.required - given)
        if missing:
            self.r.error(reward.span, f"reward '{spec.name}' needs: " + ", ".join(missing))

    def _template(self, template: ast.Template, scope: _Scope) -> None:
        for part in template.parts:
            if not isinstance(part, str):
                t = self.expr(part, scope)
                if t == T.ITEMS:
                    self.r.error(part.span, "a message cannot show the whole list of items")

    # -------------------------------------------------------------- expressions

    def expr(self, node, scope: _Scope) -> str:
        t = self._expr(node, scope)
        self.types[id(node)] = t
        return t

    def _expr(self, node, scope: _Scope) -> str:
        if isinstance(node, ast.Literal):
            return (
                {
                    "number": T.NUMBER,
                    "percent": T.NUMBER,
                    "text": T.TEXT,
                    "date": T.DATE,
                    "bool": T.BOOL,
                    "none": T.NONE,
                }[node.kind]
                if node.value is not None or node.kind == "none"
                else T.ANY
            )
        if isinstance(node, ast.ListExpr):
            element = None
            for item in node.items:
                t = self.expr(item, scope)
                if element is None or element == T.ANY:
                    element = t
                elif not T.comparable(element, t):
                    self.r.error(item.span, f"a list holds values of one type: this is a {t}, the first is a {element}")
            if element in (T.MONEY,):
                element = T.NUMBER
            return T.list_of(element or T.ANY)
        if isinstance(node, ast.Path):
            return self._path(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Unary):
            t = self.expr(node.operand, scope)
            if node.op == "not":
                if t not in (T.BOOL, T.ANY):
                    self.r.error(node.operand.span, f"'not' needs true or false, but this is a {t}")
                return T.BOOL
            if not T.is_numeric(t):
                self.r.error(node.operand.span, f"cannot negate a {t}")
                return T.ANY
            return t
        if isinstance(node, ast.Binary):
            return self._binary(node, scope)
        if isinstance(node, ast.ItemTest):
            self._need_items(node, scope)
            self._condition(node.condition, _Scope(scope.event_type, scope.event_fields, True, scope.where))
            return T.BOOL
        if isinstance(node, ast.CountItems):
            self._need_items(node, scope)
            if node.condition is not None:
                self._condition(node.condition, _Scope(scope.event_type, scope.event_fields, True, scope.where))
            return T.NUMBER
        if isinstance(node, ast.SumItems):
            self._need_items(node, scope)
            inner = _Scope(scope.event_type, scope.event_fields, True, scope.where)
            t = self.expr(node.value, inner)
            if not T.is_numeric(t):
                self.r.error(node.value.span, f"'sum' adds up numbers, but this is a {t}")
                t = T.ANY
            if node.condition is not None:
                self._condition(node.condition, inner)
            return t
        if isinstance(node, ast.Stat):
            t = self.schema.stats.get(node.name.name)
            if t is None:
                self.r.error(
                    node.name.span,
                    f"unknown statistic '{node.name.name}'",
                    did_you_mean(node.name.name, self.schema.stats)
                    or "statistics: " + ", ".join(sorted(self.schema.stats)),
                )
                return T.ANY
            return t
        raise TypeError(f"unexpected node {node!r}")  # pragma: no cover

    def _today_itself(self, node: ast.Call) -> None:
        """``is_birthday(today)`` is always true and ``days_since(today)`` always 0: surely a member date was meant."""
        arg = node.args[0]
        if isinstance(arg, ast.Path) and arg.dotted == "today":
            always = {"is_birthday": "always true", "days_since": "always 0", "days_until": "always 0"}
            field = "member.birthday" if node.name.name == "is_birthday" else "member.joined"
            self.r.warning(
                arg.span,
                f"{node.name.name}(today) is {always[node.name.name]}: it compares today with itself",
                f"pass the member's date, e.g. {node.name.name}({field})",
            )

    def _need_items(self, node, scope: _Scope) -> None:
        if scope.in_item:
            self.r.error(node.span, "item tests cannot be nested inside another item test")
        elif scope.where == "trigger":
            self.r.error(node.span, "a trigger has no purchase, so it has no items")
        elif scope.event_fields is not None and "items" not in scope.event_fields:
            self.r.error(node.span, f"'{scope.event_type}' events have no items")

    def _bind(self, node, binding: Binding) -> str:
        self.bindings[id(node)] = binding
        return binding.type

    def _path(self, node: ast.Path, scope: _Scope) -> str:
        parts = node.parts
        head = parts[0].name
        if len(parts) == 1:
            if scope.in_item and head in self.schema.item_fields:
                return self._bind(node, Binding("item", head, self.schema.item_fields[head], head not in _NN_ITEM))
            if head == "today":
                return self._bind(node, Binding("today", None, T.DATE, False))
            if head == "now":
                return self._bind(node, Binding("now", None, T.DATETIME, False))
            if head in WEEKDAYS:
                return self._bind(node, Binding("const", WEEKDAYS.index(head), T.NUMBER, False))
            if scope.event_fields is not None and head in scope.event_fields:
                return self._event_field(node, head, scope)
            if scope.where == "unknown-event":
                return T.ANY
            candidates = ["today", "now", "member", "event", *WEEKDAYS]
            if scope.event_fields:
                candidates += list(scope.event_fields)
            if scope.in_item:
                candidates += list(self.schema.item_fields)
            hint = None
            if head in self.schema.member_fields or head in self.schema.member_context_fields:
                hint = f"did you mean 'member.{head}'?"
            hint = hint or did_you_mean(head, candidates)
            if hint is None and head in self.schema.item_fields:
                hint = (
                    f"'{head}' is a field of each item: use it inside 'any item where ...' or 'count(items where ...)'"
                )
            if hint is None and head in self.schema.member_fields:
                hint = f"did you mean 'member.{head}'?"
            if hint is None and scope.where == "trigger":
                hint = "a trigger has no event: use member fields, statistics, scores and today"
            self.r.error(parts[0].span, f"unknown name '{head}'", hint)
            return T.ANY
        if len(parts) != 2:
            self.r.error(parts[2].span, f"'{node.dotted}' goes too deep: fields have no fields")
            return T.ANY
        name = parts[1].name
        if head == "member":
            return self._member_field(node, parts[1])
        if head == "event":
            if scope.event_fields is None:
                if scope.where == "trigger":
                    self.r.error(parts[0].span, "a trigger has no event", "use member fields, statistics and today")
                return T.ANY
            if name in scope.event_fields:
                return self._event_field(node, name, scope)
            self.r.error(
                parts[1].span,
                f"'{scope.event_type}' events have no field '{name}'",
                did_you_mean(name, scope.event_fields) or "declare it: event NAME { field: type }",
            )
            return T.ANY
        if head == "item":
            if not scope.in_item:
                self.r.error(
                    parts[0].span,
                    "'item' is only known inside an item test",
                    'e.g. any item where category == "coffee"',
                )
                return T.ANY
            if name in self.schema.item_fields:
                return self._bind(node, Binding("item", name, self.schema.item_fields[name], name not in _NN_ITEM))
            self.r.error(
                parts[1].span,
                f"items have no field '{name}'",
                did_you_mean(name, self.schema.item_fields) or "item fields: " + ", ".join(self.schema.item_fields),
            )
            return T.ANY
        self.r.error(
            parts[0].span,
            f"unknown name '{head}'",
            did_you_mean(head, ["member", "event", "item"]) or "dotted names start with member., event. or item.",
        )
        return T.ANY

    def _event_field(self, node, name: str, scope: _Scope) -> str:
        kind = "event" if name in CORE_EVENT_FIELDS else "event_attr"
        binding = Binding(kind, name, scope.event_fields[name], name not in NON_NULL_EVENT_FIELDS)
        return self._bind(node, binding)

    def _member_field(self, node, ident: ast.Ident) -> str:
        name = ident.name
        if name in self.schema.member_fields:
            return self._bind(node, Binding("member", name, self.schema.member_fields[name], name != "id"))
        if name in self.schema.member_context_fields:
            return self._bind(node, Binding("member_ctx", name, self.schema.member_context_fields[name]))
        balance = resolve_balance(name, self.balances)
        if balance is not None:
            return self._bind(node, Binding("balance", balance, T.NUMBER, False))
        if name in self.schema.member_attributes:
            return self._bind(node, Binding("member_attr", name, self.schema.member_attributes[name]))
        candidates = [
            *self.schema.member_fields,
            *self.schema.member_context_fields,
            *self.balances,
            *self.schema.member_attributes,
        ]
        self.r.error(
            ident.span,
            f"members have no field '{name}'",
            did_you_mean(name, candidates) or "declare custom fields: member fields { vip: boolean }",
        )
        return T.ANY

    def _call(self, node: ast.Call, scope: _Scope) -> str:
        fn = self.schema.functions.get(node.name.name)
        arg_types = [self.expr(a, scope) for a in node.args]
        if fn is None:
            hint = did_you_mean(node.name.name, self.schema.functions)
            if hint is None and node.name.name in ("sum", "count"):
                hint = f"write {node.name.name}(items where ...)"
            self._unknown(node.name.span, "function", node.name.name, f"unknown function '{node.name.name}'", hint)
            return T.ANY
        low = len(fn.params) - fn.optional
        high = None if fn.variadic else len(fn.params)
        n = len(node.args)
        if n < low or (high is not None and n > high):
            expect = f"{low}" if high == low else (f"{low} or more" if high is None else f"{low} to {high}")
            self.r.error(node.span, f"'{fn.name}' takes {expect} argument{'s' if expect != '1' else ''}, not {n}")
            return fn.result_type(arg_types) if arg_types else T.ANY
        for i, (arg, t) in enumerate(zip(node.args, arg_types)):
            accepted = fn.params[min(i, len(fn.params) - 1)]
            if T.ANY in accepted or t in (T.ANY, T.NONE) or t in accepted:
                continue
            if T.MONEY in accepted and t == T.NUMBER or T.NUMBER in accepted and t == T.MONEY:
                continue
            self.r.error(
                arg.span,
                f"'{fn.name}' needs a {' or '.join(sorted(accepted))} here, but this is a {t}",
            )
        if fn.name == "score":
            return self._score(node)
        if fn.name in ("is_birthday", "days_since", "days_until") and len(node.args) == 1:
            self._today_itself(node)
        if fn.name == "between" and len(arg_types) == 3:
            if not (T.comparable(arg_types[0], arg_types[1]) and T.comparable(arg_types[0], arg_types[2])):
                self.r.error(node.span, f"between() compares a {arg_types[0]} with a {arg_types[1]}")
        return fn.result_type(arg_types)

    def _score(self, node: ast.Call) -> str:
        arg = node.args[0] if node.args else None
        if not isinstance(arg, ast.Literal) or arg.kind != "text":
            self.r.error(node.span, 'score() takes the name of a score in quotes, e.g. score("churn_risk")')
            return T.ANY
        spec = self.schema.scores.get(arg.value)
        if spec is None:
            self._unknown(
                arg.span,
                "scoring model",
                arg.value,
                f"unknown score '{arg.value}'",
                did_you_mean(arg.value, self.schema.scores)
                or "scores come from scoring-model plugins: " + ", ".join(sorted(self.schema.scores)),
            )
            return T.ANY
        self.score_names[id(node)] = arg.value
        return spec.type

    def _binary(self, node: ast.Binary, scope: _Scope) -> str:
        op = node.op
        lt = self.expr(node.left, scope)
        rt = self.expr(node.right, scope)
        if op in ("and", "or"):
            for side, t in ((node.left, lt), (node.right, rt)):
                if t not in (T.BOOL, T.ANY):
                    self.r.error(side.span, f"'{op}' joins conditions, but this is a {t}")
            return T.BOOL
        if op in ("in", "not in"):
            element = T.element_of(rt)
            if element is None and rt != T.ANY:
                self.r.error(node.right.span, f'\'{op}\' needs a list on its right, e.g. ["store", "app"]')
            elif element is not None and not T.comparable(lt, element):
                self.r.error(node.op_span, f"cannot look for a {lt} in a list of {element}")
            return T.BOOL
        if op in ("==", "!=", "in", "not in") or op in ("<", "<=", ">", ">="):
            self._tier_literals(node)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            if not T.comparable(lt, rt):
                hint = None
                if T.TEXT in (lt, rt) and (lt in T.NUMERIC or rt in T.NUMERIC):
                    hint = "numbers are written without quotes"
                self.r.error(node.op_span, f"cannot compare a {lt} with a {rt}", hint)
            elif op not in ("==", "!=") and (lt in (T.BOOL,) or rt in (T.BOOL,)):
                self.r.error(node.op_span, f"'{op}' does not apply to true/false")
            return T.BOOL
        result = T.arithmetic(op, lt, rt)
        if result is None:
            self.r.error(node.op_span, f"cannot apply '{op}' to a {lt} and a {rt}")
            return T.ANY
        return result

    def _tier_literals(self, node: ast.Binary) -> None:
        """``member.tier == "glod"``: a tier name that the tiers block does not list."""
        names = self.tier_names()
        if not names:
            return
        for side, other in ((node.left, node.right), (node.right, node.left)):
            b = self.bindings.get(id(side))
            if b is None or b.kind != "member" or b.key != "tier":
                continue
            literals = other.items if isinstance(other, ast.ListExpr) else (other,)
            for lit in literals:
                if isinstance(lit, ast.Literal) and lit.kind == "text" and lit.value not in names:
                    self.r.error(
                        lit.span,
                        f"unknown tier '{lit.value}'",
                        did_you_mean(lit.value, names) or "tiers: " + ", ".join(names),
                    )

    # -------------------------------------------------------------- warnings

    def _contradictions(self, condition, owner: str, span: ast.Span) -> None:
        if condition is None:
            return
        conjuncts = flatten_and(condition)
        bounds: dict[str, list] = {}
        for c in conjuncts:
            fact = _simple_fact(c, self.bindings)
            if fact is not None:
                key, op, value = fact
                bounds.setdefault(key, []).append((op, value, c))
        for key, facts in bounds.items():
            clash = _clash(facts)
            if clash is not None:
                a, b = clash
                self.r.warning(
                    b.span,
                    f"'{owner}' can never fire: this contradicts line {a.span.line}, column {a.span.column}",
                    f"no value of {key} satisfies both conditions",
                )

    def _shadowing(self, rules: list[ast.Rule]) -> None:
        by_group: dict[str, list[ast.Rule]] = {}
        for rule in rules:
            if rule.group is not None and rule.group[0] in self.groups:
                by_group.setdefault(rule.group[0], []).append(rule)
        for name, members in by_group.items():
            group = self.groups[name]
            if group.pick != "first":
                continue
            for i, rule in enumerate(members):
                if rule.valid_from or rule.valid_to or rule.limits or rule.budgets:
                    continue
                if rule.condition is not None:
                    continue
                for later in members[i + 1 :]:
                    if later.event.name == rule.event.name:
                        self.r.warning(
                            later.name_span,
                            f"rule '{later.name}' never applies: '{rule.name}' comes first in group "
                            f"'{name}' (pick first) and always matches",
                            f"give '{later.name}' a higher priority, or a condition to '{rule.name}'",
                        )


_NN_ITEM = frozenset({"quantity", "unit_price", "discount", "amount"})


def flatten_and(expr) -> list:
    """The conjuncts of ``a and b and c``, without recursion."""
    return flatten(expr, "and")


def flatten(expr, op: str) -> list:
    """The operands of a chain of one operator (``a or b or c``), left to right, without recursion."""
    out, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Binary) and node.op == op:
            stack.append(node.right)
            stack.append(node.left)
        else:
            out.append(node)
    return out


def _literal_value(node):
    if isinstance(node, ast.Literal) and node.kind in ("number", "percent", "text", "date"):
        return node.value
    return None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _simple_fact(node, bindings):
    if not isinstance(node, ast.Binary) or node.op not in _FLIP:
        return None
    left, right, op = node.left, node.right, node.op
    if isinstance(right, ast.Path) and _literal_value(left) is not None:
        left, right, op = right, left, _FLIP[op]
    if not isinstance(left, ast.Path) or id(left) not in bindings:
        return None
    value = _literal_value(right)
    if value is None:
        return None
    return (left.dotted, op, value)


def _clash(facts):
    """Two facts on one field that no value satisfies together, or None."""
    for i, (op1, v1, n1) in enumerate(facts):
        for op2, v2, n2 in facts[i + 1 :]:
            if type(v1) is not type(v2) and not (isinstance(v1, Decimal) and isinstance(v2, Decimal)):
                continue
            if not _satisfiable(op1, v1, op2, v2):
                return n1, n2
    return None


def _satisfiable(op1, v1, op2, v2) -> bool:
    if op1 == "==" and op2 == "==":
        return v1 == v2
    if op1 == "==":
        return _holds(v1, op2, v2)
    if op2 == "==":
        return _holds(v2, op1, v1)
    if "!=" in (op1, op2):
        return True
    lower = [(v, op) for v, op in ((v1, op1), (v2, op2)) if op in (">", ">=")]
    upper = [(v, op) for v, op in ((v1, op1), (v2, op2)) if op in ("<", "<=")]
    if len(lower) == 1 and len(upper) == 1:
        (lo, lop), (hi, hop) = lower[0], upper[0]
        if isinstance(lo, (dt.date, Decimal)):
            if lo > hi:
                return False
            if lo == hi and (lop == ">" or hop == "<"):
                return False
    return True


def _holds(value, op, bound) -> bool:
    try:
        return {
            "<": value < bound,
            "<=": value <= bound,
            ">": value > bound,
            ">=": value >= bound,
            "!=": value != bound,
            "==": value == bound,
        }[op]
    except TypeError:
        return True


def _assignable(t: str, expected: str) -> bool:
    if t in (T.ANY, expected):
        return True
    if expected in T.NUMERIC and t in T.NUMERIC:
        return True
    return expected == T.DATETIME and t == T.DATE
