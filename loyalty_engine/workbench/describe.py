"""A program as terms a customer reads, and as a one-page cashier sheet (English or Chinese).

Everything is generated from the checked program (rates, thresholds, multipliers,
dates and limits come from its syntax tree), so the terms cannot drift from the
rules. Conditions the phrase book knows read as sentences ("when you spend at
least 200 CNY", "每周三"); any other condition is quoted as written.
"""

from __future__ import annotations

from decimal import Decimal

from ..engine.outcome import fmt
from ..language import ast
from ..language.checker import CheckedProgram, flatten_and
from ..language.schema import WEEKDAYS
from ..program import Program

LANGS = ("en", "zh")

WEEKDAY_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
CHANNEL_ZH = {"sms": "短信", "email": "电子邮件", "push": "推送", "webhook": "webhook", "console": "系统"}
PERIOD_ZH = {"day": "天", "week": "周", "month": "月", "year": "年", "transaction": "笔"}
UNIT_ZH = {"day": "天", "week": "周", "month": "个月", "year": "年"}
STAT_EN = {
    "spend": "spend",
    "visits": "visits",
    "purchases": "purchases",
    "nights": "nights",
    "refunds": "refunds",
    "points_earned": "points earned",
    "points_redeemed": "points redeemed",
}
STAT_ZH = {
    "spend": "消费金额",
    "visits": "到店次数",
    "purchases": "购物次数",
    "nights": "入住晚数",
    "refunds": "退款金额",
    "points_earned": "获得积分",
    "points_redeemed": "使用积分",
}


def num(value) -> str:
    return fmt(Decimal(value)) if not isinstance(value, str) else value


def factor(value) -> str:
    """A multiplier as written: 1.25, 1.5, 2."""
    text = f"{Decimal(value).normalize():f}"
    return text


class Writer:
    """Phrases in one language; ``src`` quotes the rule file for anything it cannot say better."""

    def __init__(self, program: Program, lang: str):
        if lang not in LANGS:
            raise ValueError(f"--lang must be one of {', '.join(LANGS)} (got {lang!r})")
        self.program = program
        self.p: CheckedProgram = program.checked
        self.lang = lang
        self.zh = lang == "zh"
        self.cur = "元" if self.zh and self.p.currency == "CNY" else self.p.currency

    # -------------------------------------------------------------- small words

    def src(self, node) -> str:
        from ..engine.trace import span_text

        return span_text(self.program, node)

    def unit(self, balance: str, amount=None) -> str:
        balance = self.p.balance_for_unit(balance) or balance
        if self.zh:
            return {"points": "积分", "stamps": "印花"}.get(balance, balance)
        if amount in ("1", 1) and balance.endswith("s"):
            return balance[:-1]
        return balance.replace("_", " ")

    def money(self, value) -> str:
        return f"{num(value)} {self.cur}" if not self.zh else f"{num(value)} {self.cur}"

    def literal(self, node):
        if isinstance(node, ast.Unary) and node.op == "neg" and isinstance(node.operand, ast.Literal):
            inner = self.literal(node.operand)
            return f"-{inner}" if inner else None
        if isinstance(node, ast.Literal):
            if node.kind == "text":
                return str(node.value)
            if node.kind == "date":
                return node.value.isoformat()
            if node.kind == "percent":
                return f"{fmt(node.value * 100)}%"
            return num(node.value) if node.value is not None else None
        if isinstance(node, ast.ListExpr) and all(isinstance(i, ast.Literal) for i in node.items):
            return self.join([self.literal(i) for i in node.items], "or")
        if isinstance(node, ast.Path) and node.dotted in WEEKDAYS:
            return self.weekday(WEEKDAYS.index(node.dotted))
        if isinstance(node, ast.ListExpr) and all(isinstance(i, ast.Path) and i.dotted in WEEKDAYS for i in node.items):
            return self.join([self.weekday(WEEKDAYS.index(i.dotted)) for i in node.items], "and")
        return None

    def weekday(self, n: int) -> str:
        return WEEKDAY_ZH[n] if self.zh else WEEKDAY_EN[n] + "s"

    def join(self, parts, word="and") -> str:
        parts = [p for p in parts if p]
        if self.zh:
            return "、".join(parts)
        if len(parts) <= 1:
            return "".join(parts)
        return ", ".join(parts[:-1]) + f" {word} " + parts[-1]

    def items_of(self, condition) -> str | None:
        """What an item filter selects: 'coffee', '生鲜', or None when not a simple category test."""
        if condition is None:
            return None
        if (
            isinstance(condition, ast.Binary)
            and condition.op in ("==", "in")
            and isinstance(condition.left, ast.Path)
            and condition.left.parts[-1].name in ("category", "sku", "brand", "name")
        ):
            return self.literal(condition.right)
        return None

    # -------------------------------------------------------------- conditions

    def condition(self, expr) -> str:
        if expr is None:
            return ""
        parts = [self.conjunct(c) for c in flatten_and(expr)]
        return (", " if not self.zh else "，").join(p for p in parts if p)

    def conjunct(self, c) -> str:
        zh = self.zh
        if isinstance(c, ast.Unary) and c.op == "not":
            inner = self.conjunct(c.operand)
            return f"不含{inner}" if zh and inner else f"except {inner}" if inner else f"unless {self.src(c.operand)}"
        if isinstance(c, ast.ItemTest):
            what = self.items_of(c.condition)
            if what:
                if c.quantifier == "any":
                    return f"购买{what}时" if zh else f"when your basket includes {what}"
                return f"全部为{what}时" if zh else f"when everything in your basket is {what}"
        if isinstance(c, ast.Call) and c.name.name == "is_birthday":
            return "生日当天" if zh else "on your birthday"
        if isinstance(c, ast.Call) and c.name.name == "between" and len(c.args) == 3:
            x, low, high = c.args
            if _days_since(x, "joined"):
                return (
                    f"入会第 {self.src(low)} 至 {self.src(high)} 天"
                    if zh
                    else (f"between {self.src(low)} and {self.src(high)} days after you join")
                )
        if isinstance(c, ast.Binary):
            phrase = self.comparison(c)
            if phrase:
                return phrase
        return f"条件: {self.src(c)}" if zh else f"when {self.src(c)}"

    def comparison(self, c: ast.Binary) -> str | None:
        zh = self.zh
        left, right, op = c.left, c.right, c.op
        value = self.literal(right)
        at_least = {
            ">=": ("至少", "at least"),
            ">": ("超过", "more than"),
            "<": ("少于", "less than"),
            "<=": ("不超过", "at most"),
        }
        if isinstance(left, ast.Path):
            binding = self.p.bindings.get(id(left))
            name = left.parts[-1].name
            kind = binding.kind if binding is not None else ""
            if kind == "event" and name in ("net_amount", "amount") and op in at_least and value:
                if zh:
                    return {">=": f"消费满 {value} {self.cur}", ">": f"消费超过 {value} {self.cur}"}.get(
                        op, f"消费{at_least[op][0]} {value} {self.cur}"
                    )
                return f"when you spend {at_least[op][1]} {value} {self.cur}"
            if name == "tier" and op in ("==", "in") and value:
                return f"{value}会员" if zh else f"for {value} members"
            if name == "channel" and op in ("==", "in") and value:
                return f"通过{value}下单" if zh else f"on {value} orders"
            if name == "store" and op in ("==", "in") and value:
                return f"在门店 {value}" if zh else f"at store {value}"
            is_true = isinstance(right, ast.Literal) and right.kind == "bool" and right.value is True
            if kind == "member_attr" and op == "==" and is_true:
                return f"{name}会员" if zh else f"for members with {name.replace('_', ' ')}"
            if kind in ("event", "event_attr") and op == "==" and is_true:
                return f"{name}时" if zh else f"when {name.replace('_', ' ')}"
            if kind in ("event", "event_attr") and op in ("==", "in") and value:
                return f"{name}为 {value}" if zh else f"when {name.replace('_', ' ')} is {value}"
            if op in at_least and value and kind in ("event", "event_attr"):
                return (
                    f"{name} {at_least[op][0]} {value}"
                    if zh
                    else f"when {name.replace('_', ' ')} is {at_least[op][1]} {value}"
                )
            if (
                op in at_least
                and value
                and name in self.p.balances
                or (left.dotted.startswith("member.") and op in at_least and value)
            ):
                unit = self.unit(name) if name in self.p.balances else name
                return f"{unit}{at_least[op][0]} {value}" if zh else f"when you have {at_least[op][1]} {value} {unit}"
        if isinstance(left, ast.Call):
            fname = left.name.name
            if fname == "weekday":
                if op == "==" and value:
                    return f"每{value}" if zh else f"on {value}"
                if op == "in" and value:
                    return f"每{value}" if zh else f"on {value}"
                if op == "<=" and value and isinstance(right, ast.Path):
                    last = WEEKDAYS.index(right.dotted)
                    return f"周一至{WEEKDAY_ZH[last]}" if zh else f"Monday to {WEEKDAY_EN[last]}"
                if op == ">=" and value and isinstance(right, ast.Path):
                    first = WEEKDAYS.index(right.dotted)
                    return f"{WEEKDAY_ZH[first]}至周日" if zh else f"{WEEKDAY_EN[first]} to Sunday"
            if fname == "hour" and value:
                hour = int(Decimal(value))
                if op == ">=":
                    return f"{hour}:00 起" if zh else f"from {hour}:00"
                if op == "<":
                    return f"{hour}:00 前" if zh else f"before {hour}:00"
            if fname == "month" and op == "==" and isinstance(right, ast.Call) and right.name.name == "month":
                if any(isinstance(a, ast.Path) and a.dotted.endswith("birthday") for a in right.args):
                    return "生日当月" if zh else "in your birthday month"
            if fname == "month" and op == "==" and value:
                return f"{value} 月" if zh else f"in month {value}"
            if fname == "days_since" and op in (">=", ">") and value:
                if _days_since(left, "last_purchase"):
                    return f"{value} 天未购物" if zh else f"when you have not bought anything for {value} days"
            if fname == "days_since" and op == "==" and value and _days_since(left, "joined"):
                return f"入会第 {value} 天" if zh else f"{value} days after you join"
            if fname == "score" and op in at_least and value and left.args:
                score = self.src(left.args[0]).strip('"')
                return (
                    f"{score} 评分{at_least[op][0]} {value}"
                    if zh
                    else f"when our {score.replace('_', ' ')} score is {at_least[op][1]} {value}"
                )
        if isinstance(left, ast.Stat):
            stat = left.name.name
            window = self.window(left.window)
            if stat == "purchases" and op == "==" and value == "0" and left.window.kind == "lifetime":
                return "首次购物" if zh else "on your first purchase"
            if op in at_least and value:
                if zh:
                    return f"{window}{STAT_ZH.get(stat, stat)}{at_least[op][0]} {value}"
                return f"when your {STAT_EN.get(stat, stat)} over {window} is {at_least[op][1]} {value}"
        if isinstance(left, ast.CountItems) and op in at_least and value:
            what = self.items_of(left.condition)
            if left.what == "lines":
                return (
                    f"一次购买 {value} 种以上商品"
                    if zh
                    else f"when your basket has {at_least[op][1]} {value} different items"
                )
            if what or left.condition is None:
                thing = what or ("商品" if zh else "items")
                return f"购买{thing}满 {value} 件" if zh else f"when you buy {at_least[op][1]} {value} items of {thing}"
        if isinstance(left, ast.SumItems) and op in at_least and value:
            what = self.items_of(left.condition)
            if what:
                return (
                    f"{what}满 {value} {self.cur}"
                    if zh
                    else f"when you spend {at_least[op][1]} {value} {self.cur} on {what}"
                )
        return None

    def window(self, w: ast.Window) -> str:
        if self.zh:
            if w.kind == "rolling":
                return f"近 {w.amount} {UNIT_ZH[w.unit]}"
            if w.kind == "calendar":
                return {"year": "本年", "month": "本月", "week": "本周"}[w.unit]
            return "累计"
        return w.describe()

    # -------------------------------------------------------------- actions

    def action(self, a) -> str | None:
        zh = self.zh
        if isinstance(a, ast.Award):
            constant = self.literal(a.amount)
            unit = self.unit(a.unit.name, constant.replace(",", "").lstrip("-") if constant else None)
            amount = self.literal(a.amount) or self.src(a.amount)
            cap = ""
            if a.up_to is not None:
                cap = f" (每笔最多 {num(a.up_to)})" if zh else f" (at most {num(a.up_to)} {self.unit(a.unit.name)})"
            what = self.items_of(a.items_filter)
            if a.rate is None and self.literal(a.amount) is None:
                return f"{unit}: {amount}" if zh else f"{self.unit(a.unit.name)} equal to {amount.replace('_', ' ')}"
            if a.rate is None:
                if zh:
                    return f"赠送 {amount} {unit}" if not amount.startswith("-") else f"扣除 {amount[1:]} {unit}"
                return f"{amount} bonus {unit}" if not amount.startswith("-") else f"minus {amount[1:]} {unit}"
            if a.rate == "money":
                if zh:
                    on = f"购买{what}每" if what else ("每消费" if not a.items_source else "商品每消费")
                    return f"{on} {num(a.per)} {self.cur}积 {amount} {unit}{cap}"
                on = f"spent on {what}" if what else self._source_en(a)
                return f"{amount} {unit} per {num(a.per)} {self.cur} {on}{cap}"
            if a.rate == "item":
                if zh:
                    return f"每件{what or '商品'}积 {amount} {unit}{cap}"
                return f"{amount} {unit} per item{' of ' + what if what else ''}{cap}"
            percent = amount
            if zh:
                on = f"{what}消费" if what else "消费金额"
                return f"{on}的 {percent} 返还为{unit}{cap}"
            on = f"of what you spend on {what}" if what else "of what you pay"
            return f"{percent} {on} back as {unit}{cap}"
        if isinstance(a, ast.Multiply):
            times = factor(a.factor.value) if isinstance(a.factor, ast.Literal) else self.src(a.factor)
            unit = self.unit(a.unit.name)
            if zh:
                return f"{unit} {times} 倍"
            return {"2": f"double {unit}", "3": f"triple {unit}"}.get(times, f"{times}x {unit}")
        if isinstance(a, ast.IssueCoupon):
            template = self.p.coupons.get(a.coupon.name)
            title = f" ({template.title})" if template is not None and template.title else ""
            return f"优惠券 {a.coupon.name}{title}" if zh else f"coupon {a.coupon.name}{title}"
        if isinstance(a, ast.Send):
            channel = a.channel.name
            return f"{CHANNEL_ZH.get(channel, channel)}通知" if zh else f"a message by {channel}"
        if isinstance(a, ast.SetTier):
            return f"升为{a.tier.name}" if zh else f"{a.tier.name} status"
        if isinstance(a, ast.Reward):
            return f"{a.reward_type.name} 奖励" if zh else f"a {a.reward_type.name.replace('_', ' ')} reward"
        return None  # caps are described with the limits

    def _source_en(self, a: ast.Award) -> str:
        if a.items_source:
            return "spent on items"
        text = self.src(a.source)
        if text in ("net_amount", "event.net_amount"):
            return "paid"
        if text in ("amount", "event.amount"):
            return "spent before discounts"
        return "of " + text.replace("_", " ")

    def limit(self, limit: ast.Limit) -> str:
        if self.zh:
            times = "一次" if limit.times == 1 else f" {limit.times} 次"
            if limit.period == "member":
                return f"每位会员限{times}"
            if limit.period == "rolling":
                return f"每 {limit.days} 天限{times}"
            if limit.period == "event":
                return f"每笔限{times}"
            return f"每{PERIOD_ZH[limit.period]}限{times}"
        return limit.describe().replace("once per member", "once per member").replace("per event", "per order")

    def dates(self, valid_from, valid_to) -> str:
        if not valid_from and not valid_to:
            return ""
        if self.zh:
            if valid_from and valid_to:
                return f"{valid_from.isoformat()} 至 {valid_to.isoformat()}"
            return f"{valid_from.isoformat()} 起" if valid_from else f"至 {valid_to.isoformat()}"
        if valid_from and valid_to:
            return f"from {valid_from.isoformat()} to {valid_to.isoformat()}"
        return f"from {valid_from.isoformat()}" if valid_from else f"until {valid_to.isoformat()}"

    # -------------------------------------------------------------- one rule

    def rule(self, rule, campaign_dates: bool = True) -> str | None:
        actions = [t for t in (self.action(a) for a in rule.actions) if t]
        if not actions:
            return None
        what = self.join(actions, "and")
        when = self.condition(rule.condition)
        extras = [self.limit(lim) for lim in rule.limits]
        if isinstance(rule, ast.Rule):
            dates = self.dates(rule.valid_from, rule.valid_to)
            if dates:
                extras.append(dates)
            if rule.campaign and campaign_dates and rule.campaign in self.p.campaigns:
                c = self.p.campaigns[rule.campaign]
                extras.append(f"{rule.campaign} {self.dates(c.valid_from, c.valid_to)}".strip())
            if rule.group is not None and rule.group[0] in self.p.groups:
                pick = self.p.groups[rule.group[0]].pick
                if self.zh:
                    extras.append(f"“{rule.group[0]}”优惠只取" + ("最优一项" if pick == "best" else "第一项"))
                else:
                    extras.append(f"only the {'best' if pick == 'best' else 'first'} '{rule.group[0]}' offer applies")
        if self.zh:
            text = f"{rule.name}: {when + '，' if when else ''}{what}"
            return text + (f" ({'；'.join(extras)})" if extras else "")
        text = f"{rule.name}: {what}{' ' + when if when else ''}"
        return text + (f" ({'; '.join(extras)})" if extras else "")


def _days_since(node, field: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and node.name.name == "days_since"
        and bool(node.args)
        and isinstance(node.args[0], ast.Path)
        and node.args[0].dotted.endswith(field)
    )


# ------------------------------------------------------------------ the documents


def _caps(p: CheckedProgram) -> list[ast.Cap]:
    return [a for r in p.rules for a in r.actions if isinstance(a, ast.Cap)]


def _cap_rules(p: CheckedProgram) -> list[str]:
    return [r.name for r in p.rules if any(isinstance(a, ast.Cap) for a in r.actions)]


def _campaign_rules(p: CheckedProgram) -> dict[str, list[ast.Rule]]:
    out: dict[str, list[ast.Rule]] = {}
    for r in p.rules:
        if r.campaign:
            out.setdefault(r.campaign, []).append(r)
    return out


def describe(program: Program, lang: str = "en") -> str:
    """The program's terms for customers, as Markdown."""
    w = Writer(program, lang)
    p = program.checked
    zh = w.zh
    lines = [f"# {p.name}" + (" 会员条款" if zh else ": programme terms"), ""]

    lines.append("## 积分规则" if zh else "## How you earn")
    lines.append("")
    for rule in p.rules:
        if rule.campaign:
            continue
        text = w.rule(rule)
        if text:
            lines.append(f"- {text}")
    caps = _caps(p)
    if caps:
        lines.append("")
        names = w.join(_cap_rules(p), "and")
        if zh:
            lines.append(
                f"上限 ({names}): "
                + "；".join(f"每{PERIOD_ZH[c.period]}最多 {num(c.amount)} {w.unit(c.unit.name)}" for c in caps)
            )
        else:
            lines.append(
                f"Limits ({names}): "
                + "; ".join(f"at most {num(c.amount)} {w.unit(c.unit.name)} per {c.period}" for c in caps)
                + "."
            )
    if p.tiers is not None and p.tiers.levels:
        t = p.tiers
        lines += ["", "## 会员等级" if zh else "## Tiers", ""]
        metric = t.metric.name
        if zh:
            lines.append(f"按{w.window(t.window)}{STAT_ZH.get(metric, metric)}评定:")
        else:
            lines.append(f"Your tier follows your {STAT_EN.get(metric, metric)} over {w.window(t.window)}:")
        lines.append("")
        for level in t.levels:
            amount = w.money(level.threshold) if metric in ("spend", "refunds") else num(level.threshold)
            earn = ""
            if level.multiplier:
                earn = f"，积分 {factor(level.multiplier)} 倍" if zh else f"; earn {factor(level.multiplier)}x points"
            lines.append(f"- {level.name.name}: " + (f"满 {amount}{earn}" if zh else f"from {amount}{earn}"))
        lines.append("")
        if zh:
            text = "达到门槛即时升级"
            if t.review:
                text += f"；每 {t.review.every_months} 个月复核一次，未达标者保级 {t.review.grace_months} 个月后降级"
            lines.append(text + "。")
        else:
            text = "You move up as soon as you reach a threshold"
            if t.review:
                text += (
                    f"; tiers are reviewed every {t.review.every_months} months, and a member below their"
                    f" tier keeps it for {t.review.grace_months} more month{'s' if t.review.grace_months != 1 else ''}"
                )
            lines.append(text + ".")
    campaigns = _campaign_rules(p)
    if campaigns:
        lines += ["", "## 活动" if zh else "## Campaigns", ""]
        for name, rules in campaigns.items():
            c = p.campaigns[name]
            dates = w.dates(c.valid_from, c.valid_to)
            budget = ""
            if c.budgets:
                b = c.budgets[0]
                budget = (
                    f"，送完即止 (共 {num(b.amount)} {w.unit(b.unit.name)})"
                    if zh
                    else (f", while its budget of {num(b.amount)} {w.unit(b.unit.name)} lasts")
                )
            lines.append(f"- {name} ({dates}{budget}):")
            for rule in rules:
                text = w.rule(rule, campaign_dates=False)
                if text:
                    lines.append(f"  - {text}")
    if p.coupons:
        lines += ["", "## 优惠券" if zh else "## Coupons", ""]
        for c in p.coupons.values():
            lines.append(f"- {coupon_text(w, c)}")
    lines += ["", "## 积分有效期" if zh else "## Expiry", ""]
    lines += [f"- {t}" for t in expiry_lines(w)]
    if p.triggers:
        lines += ["", "## 我们会联系您" if zh else "## When we contact you", ""]
        for trigger in p.triggers:
            text = w.rule(trigger)
            if text:
                lines.append(f"- {text}")
    return "\n".join(lines).rstrip() + "\n"


def coupon_text(w: Writer, c: ast.CouponTemplate) -> str:
    zh = w.zh
    parts = []
    if c.discount_kind == "percent":
        parts.append(f"优惠 {num(c.discount_value)}%" if zh else f"{num(c.discount_value)}% off")
    elif c.discount_kind == "amount":
        parts.append(f"减 {w.money(c.discount_value)}" if zh else f"{w.money(c.discount_value)} off")
    elif c.discount_kind == "free_item":
        parts.append(f"免费 {c.discount_value}" if zh else f"a free {c.discount_value}")
    if c.min_spend is not None:
        parts.append(f"满 {w.money(c.min_spend)} 可用" if zh else f"minimum spend {w.money(c.min_spend)}")
    if c.categories:
        cats = w.join(list(c.categories), "and")
        parts.append(f"限{cats}" if zh else f"on {cats} only")
    if c.valid_days is not None:
        parts.append(f"{c.valid_days} 天内有效" if zh else f"valid {c.valid_days} days")
    elif c.valid_until is not None:
        parts.append(f"有效期至 {c.valid_until.isoformat()}" if zh else f"valid until {c.valid_until.isoformat()}")
    else:
        parts.append("长期有效" if zh else "does not expire")
    if c.per_member is not None:
        parts.append(f"每位会员限 {c.per_member} 张" if zh else f"at most {c.per_member} per member")
    if c.total is not None:
        parts.append(f"共 {num(c.total)} 张" if zh else f"{num(c.total)} in total")
    title = f" {c.title}" if c.title else ""
    return f"{c.code.name}{title}: " + ("，".join(parts) if zh else "; ".join(parts))


def expiry_lines(w: Writer) -> list[str]:
    zh = w.zh
    out = []
    for name, info in w.p.balances.items():
        unit = w.unit(name)
        e = info.expiry
        if e is None or e.kind == "never":
            if name == "points" or e is not None:
                out.append(f"{unit}长期有效" if zh else f"{unit.capitalize()} do not expire.")
        elif e.kind == "year_end":
            out.append(
                f"{unit}每年 12 月 31 日清零"
                if zh
                else f"{unit.capitalize()} expire on 31 December of the year they are earned."
            )
        else:
            period = (
                f"{e.amount} {UNIT_ZH.get(e.unit, e.unit)}"
                if zh
                else f"{e.amount} {e.unit}{'s' if e.amount != 1 else ''}"
            )
            after = {
                "earning": ("自获得起", "after they are earned"),
                "last activity": ("自最后一次消费或使用起", "after your last activity"),
                "joining": ("自入会起", "after you join"),
            }.get(e.after, (e.after, e.after))
            out.append(f"{unit}{after[0]} {period}后过期" if zh else f"{unit.capitalize()} expire {period} {after[1]}.")
        if info.pending_days:
            out.append(
                f"{unit}在获得 {info.pending_days} 天后可以使用"
                if zh
                else f"{unit.capitalize()} can be used {info.pending_days} days after they are earned."
            )
    return out


def cashier_sheet(program: Program, lang: str = "en") -> str:
    """One page for the till: what to tell the customer, which coupons to accept, tiers and caps."""
    w = Writer(program, lang)
    p = program.checked
    zh = w.zh
    lines = [f"{p.name} — " + ("收银员速查表" if zh else "cashier sheet") + f" ({p.currency}, {p.timezone})", ""]
    lines.append("每笔交易:" if zh else "On every purchase:")
    plan = program.code.events.get("purchase")
    for rp in plan.rules if plan else ():
        text = w.rule(rp.rule)
        if text:
            lines.append(f"  - {text}")
    caps = _caps(p)
    if caps:
        lines.append(
            (f"  上限 ({w.join(_cap_rules(p))}): " if zh else f"  caps ({w.join(_cap_rules(p))}): ")
            + ", ".join(
                f"{num(c.amount)} {w.unit(c.unit.name)}/{PERIOD_ZH[c.period] if zh else c.period}" for c in caps
            )
        )
    others = [r for r in p.rules if r.event.name != "purchase"]
    if others:
        lines += ["", "其他事件:" if zh else "Other events:"]
        for r in others:
            text = w.rule(r)
            if text:
                lines.append(f"  - [{r.event.name}] {text}")
    if p.tiers is not None and p.tiers.levels:
        lines += ["", "会员等级:" if zh else "Tiers:"]
        row = []
        for level in p.tiers.levels:
            mult = f" x{factor(level.multiplier)}" if level.multiplier else ""
            row.append(f"{level.name.name} {num(level.threshold)}+{mult}")
        lines.append("  " + " | ".join(row))
    if p.coupons:
        lines += ["", "可受理的优惠券:" if zh else "Coupons to accept:"]
        for c in p.coupons.values():
            lines.append(f"  - {coupon_text(w, c)}")
    lines += ["", "积分:" if zh else "Points:"]
    lines += [f"  - {t}" for t in expiry_lines(w)]
    lines.append(
        "  - 退货时按退回商品扣回积分，系统自动处理。"
        if zh
        else "  - Returns take back exactly what the returned lines earned: the system does it, nothing to do at the till."
    )
    return "\n".join(lines).rstrip() + "\n"
