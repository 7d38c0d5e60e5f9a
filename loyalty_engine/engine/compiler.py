"""Compile a checked program into one Python function per event type.

Each rule becomes straight-line code inside that function: loads hoisted into
locals, item tests lowered to loops, literals taken from a constant table.
The function returns a compact raw result; :mod:`outcome` turns it into
effects and explanations only when they are asked for.
"""

from __future__ import annotations

from attrs import define, field

from ..language import ast
from ..language.checker import CheckedProgram
from . import runtime
from .codegen import Constants, Emitter

_CODE_NAME = "<loyalty-program>"


@define
class ActionPlan:
    index: int
    kind: str  # award_rate | award_fixed | multiply | cap | coupon | send | set_tier | reward
    node: object
    balance: str | None = None
    slot: str | None = None  # local holding the action's value in generated code


@define
class RulePlan:
    rule: ast.Rule | ast.Trigger
    position: int  # index in the records tuple
    actions: list[ActionPlan]
    group: str | None
    pick: str | None
    budgets: list[tuple[str, int, str]]  # (key, amount, unit)
    valid_from: object = None
    valid_to: object = None

    @property
    def deferred(self) -> bool:
        """Awards under a points budget are rounded and clipped on their own, after multipliers."""
        units = {unit for _, _, unit in self.budgets}
        return any(a.kind in ("award_rate", "award_fixed") and a.balance in units for a in self.actions)


@define
class EventPlan:
    event_type: str
    rules: list[RulePlan]
    function: object = None
    source: str = ""
    # (first line, last line, rule) in the compiled code, so a failure can name the rule that raised
    rule_lines: list = field(factory=list)

    def rule_at(self, line: int):
        """The rule whose generated code holds ``line`` of the compiled module (None: shared code)."""
        for first, last, rule in self.rule_lines:
            if first <= line <= last:
                return rule
        return None


@define
class CompiledCode:
    balances: list[str]
    events: dict[str, EventPlan] = field(factory=dict)
    triggers: EventPlan | None = None
    namespace: dict = field(factory=dict)


def balance_quantum(program: CheckedProgram, balance: str):
    return runtime.CENT if program.balances[balance].money else runtime.ONE


class ProgramCompiler:
    def __init__(self, program: CheckedProgram):
        self.p = program
        self.k = Constants()
        self.balances = list(program.balances)
        import zoneinfo

        self.tz = zoneinfo.ZoneInfo(program.timezone)

    def compile(self) -> CompiledCode:
        code = CompiledCode(self.balances)
        by_event: dict[str, list[ast.Rule]] = {}
        for rule in self.p.rules:
            by_event.setdefault(rule.event.name, []).append(rule)
        sources = []
        offset = 0  # lines of the module before this plan's function

        def place(plan: EventPlan) -> None:
            nonlocal offset
            plan.rule_lines = [(offset + first, offset + last, rule) for first, last, rule in plan.rule_lines]
            sources.append(plan.source)
            offset += plan.source.count("\n") + 2  # the function and the blank line between functions

        for event_type, rules in by_event.items():
            plan = self._event_plan(event_type, rules)
            code.events[event_type] = plan
            place(plan)
        if self.p.triggers:
            code.triggers = self._trigger_plan(self.p.triggers)
            place(code.triggers)
        namespace = self.namespace()
        exec(compile("\n\n".join(sources), _CODE_NAME, "exec"), namespace)  # noqa: S102 - source built from the tree only
        for plan in code.events.values():
            plan.function = namespace[f"_eval_{self._fname(plan.event_type)}"]
        if code.triggers:
            code.triggers.function = namespace["_eval_triggers"]
        code.namespace = namespace
        return code

    def namespace(self) -> dict:
        ns = {
            "_ZERO": runtime.ZERO,
            "_FLOOR": runtime.ROUNDING["floor"],
            "_CEILING": runtime.ROUNDING["ceiling"],
            "_ONE": runtime.ONE,
            "_TZ": self.tz,
            "_RM": runtime.ROUNDING[self.p.rounding],
            "_Scope": runtime.Scope,
            "_div": runtime.div,
            "_to_date": runtime.to_date,
            "_date_add": runtime.date_add,
            "_date_diff": runtime.date_diff,
            "_limit_ok": runtime.limit_ok,
            "_budget_left": runtime.budget_left,
            "_cap_left": runtime.cap_left,
            "_nz": runtime.nz,
            "_monthly_due": runtime.monthly_due,
            "__builtins__": {"min": min, "max": max, "int": int, "len": len},
        }
        ns.update(self.k.values)
        return ns

    def _fname(self, event_type: str) -> str:
        return f"{list(self.p.schema.event_types).index(event_type)}"

    # -------------------------------------------------------------- planning

    def _plan_rule(self, rule, position: int) -> RulePlan:
        actions = []
        for j, action in enumerate(rule.actions):
            if isinstance(action, ast.Award):
                balance = self.p.balance_for_unit(action.unit.name)
                kind = "award_fixed" if action.rate is None else "award_rate"
                actions.append(ActionPlan(j, kind, action, balance, f"_a{position}_{j}"))
            elif isinstance(action, ast.Multiply):
                actions.append(
                    ActionPlan(j, "multiply", action, self.p.balance_for_unit(action.unit.name), f"_x{position}_{j}")
                )
            elif isinstance(action, ast.Cap):
                actions.append(ActionPlan(j, "cap", action, self.p.balance_for_unit(action.unit.name)))
            elif isinstance(action, ast.IssueCoupon):
                actions.append(ActionPlan(j, "coupon", action))
            elif isinstance(action, ast.Send):
                actions.append(ActionPlan(j, "send", action))
            elif isinstance(action, ast.SetTier):
                actions.append(ActionPlan(j, "set_tier", action))
            elif isinstance(action, ast.Reward):
                actions.append(ActionPlan(j, "reward", action, None, f"_w{position}_{j}"))
        group = pick = None
        budgets = []
        valid_from, valid_to = rule.valid_from, rule.valid_to
        if isinstance(rule, ast.Rule):
            if rule.group is not None and rule.group[0] in self.p.groups:
                group = rule.group[0]
                pick = self.p.groups[group].pick
            for b in rule.budgets:
                budgets.append((f"rule:{rule.name}", b.amount, self._budget_unit(b)))
            if rule.campaign is not None and rule.campaign in self.p.campaigns:
                campaign = self.p.campaigns[rule.campaign]
                for b in campaign.budgets:
                    budgets.append((f"campaign:{campaign.name}", b.amount, self._budget_unit(b)))
                if campaign.valid_from and (valid_from is None or campaign.valid_from > valid_from):
                    valid_from = campaign.valid_from
                if campaign.valid_to and (valid_to is None or campaign.valid_to < valid_to):
                    valid_to = campaign.valid_to
        return RulePlan(rule, position, actions, group, pick, budgets, valid_from, valid_to)

    def _budget_unit(self, budget: ast.Budget) -> str:
        if budget.unit.name in ("coupons", "coupon"):
            return "coupons"
        return self.p.balance_for_unit(budget.unit.name) or budget.unit.name

    # -------------------------------------------------------------- event functions

    def _event_plan(self, event_type: str, rules: list[ast.Rule]) -> EventPlan:
        plans = [self._plan_rule(rule, i) for i, rule in enumerate(rules)]
        em = Emitter(self.p, self.k)
        em.line("_coupons = []")
        em.line("_settier = None")
        em.line("_fins = {}" if any(p.deferred for p in plans) else "_fins = None")
        used = self._balances_used(plans)
        self._init_balances(em, used, tier_multiplier=True)
        firsts = sorted({p.group for p in plans if p.pick == "first"})
        for g in firsts:
            em.line(f"_gdone{self._gid(g)} = False")
        for plan in plans:
            self._emit_rule(em, plan)
        self._emit_best_groups(em, plans)
        self._emit_deferred(em, plans)
        totals = self._emit_totals(em, used, plans)
        records = "(" + "".join(f"_r{p.position}, " for p in plans) + ")"
        em.line(f"return (_coupons, {records}, _settier, _fins{totals})")
        header = f"def _eval_{self._fname(event_type)}(_e, _c, as_of):"
        prologue = em.prologue()
        source = "\n".join([header, *prologue, *em.lines])
        return EventPlan(event_type, plans, None, source, self._rule_lines(em, 1 + len(prologue)))

    @staticmethod
    def _rule_lines(em: Emitter, before: int) -> list:
        """Each rule's lines in its function's source (1-based), from where _emit_rule started and ended."""
        return [(before + first + 1, before + last, rule) for first, last, rule in em.rule_spans]

    def _init_balances(self, em: Emitter, used: list[str], tier_multiplier: bool) -> None:
        """Per balance: earn per amount, fixed bonuses, cap and multiplier (the tier's, for points)."""
        mults = self._tier_multipliers() if tier_multiplier else None
        for b in used:
            bi = self.balances.index(b)
            em.line(f"_earn{bi} = _ZERO")
            em.line(f"_bonus{bi} = _ZERO")
            em.line(f"_cap{bi} = None")
            if b == "points" and mults:
                em.uses.add("member")
                em.line(f"_mult{bi} = {self.k.add(mults, key=('tiermult',))}.get(_m.tier, _ONE)")
            else:
                em.line(f"_mult{bi} = _ONE")

    def _tier_multipliers(self) -> dict | None:
        tiers = self.p.tiers
        if not tiers:
            return None
        mults = {lvl.name.name: lvl.multiplier for lvl in tiers.levels if lvl.multiplier is not None}
        return mults or None

    def _gid(self, group: str) -> int:
        return list(self.p.groups).index(group)

    def _balances_used(self, plans: list[RulePlan]) -> list[str]:
        used = {a.balance for p in plans for a in p.actions if a.balance}
        return [b for b in self.balances if b in used]

    def _date_gate(self, em: Emitter, plan: RulePlan) -> str | None:
        parts = []
        if plan.valid_from is not None:
            em.uses.add("today")
            parts.append(f"{self.k.add(plan.valid_from)} <= _today")
        if plan.valid_to is not None:
            em.uses.add("today")
            parts.append(f"_today <= {self.k.add(plan.valid_to)}")
        rule = plan.rule
        if isinstance(rule, ast.Trigger) and rule.schedule == "weekly":
            from ..language.schema import WEEKDAYS

            em.uses.add("today")
            parts.append(f"_today.weekday() == {WEEKDAYS.index(rule.schedule_arg.name)}")
        elif isinstance(rule, ast.Trigger) and rule.schedule == "monthly":
            em.uses.add("today")
            parts.append(f"_monthly_due(_today, {int(rule.schedule_arg)})")
        return " and ".join(parts) if parts else None

    def _emit_rule(self, em: Emitter, plan: RulePlan) -> None:
        rule = plan.rule
        start = len(em.lines)
        self._emit_rule_body(em, plan)
        em.rule_spans.append((start, len(em.lines), rule))

    def _emit_rule_body(self, em: Emitter, plan: RulePlan) -> None:
        rule = plan.rule
        i = plan.position
        em.line(f"_r{i} = None")
        opened = 0
        gate = self._date_gate(em, plan)
        if plan.pick == "first":
            g = f"not _gdone{self._gid(plan.group)}"
            gate = f"{g} and {gate}" if gate else g
        if gate:
            em.line(f"if {gate}:")
            em.depth += 1
            opened += 1
        if rule.condition is not None:
            cond, _ = em.expr(rule.condition)
            em.line(f"if {cond}:")
            em.depth += 1
            opened += 1
        checks = []
        for limit in rule.limits:
            em.uses.add("today")
            em.uses.add("ctx")
            checks.append(
                f"_limit_ok(_c, {self.k.add(self._history_key(rule))}, _today, _TZ, {limit.times}, "
                f"{self.k.add(limit.period)}, {limit.days})"
            )
        for key, amount, unit in plan.budgets:
            em.uses.add("ctx")
            need = ">= 1" if unit == "coupons" else "> 0"
            checks.append(f"_budget_left(_c, {self.k.add(key)}, {amount}) {need}")
        if checks:
            em.line(f"if {' and '.join(checks)}:")
            em.depth += 1
            opened += 1
        values = []
        for a in plan.actions:
            values.append(self._emit_action_value(em, a))
        em.line(f"_r{i} = ({''.join(v + ', ' for v in values)})")
        if plan.pick == "first":
            em.line(f"_gdone{self._gid(plan.group)} = True")
        if plan.pick != "best" and not plan.deferred:
            self._emit_accumulate(em, plan)
        elif plan.pick != "best":
            self._emit_accumulate(em, plan, skip_awards=True)
        em.depth -= opened

    def _history_key(self, rule) -> str:
        prefix = "trigger:" if isinstance(rule, ast.Trigger) else "rule:"
        return prefix + rule.name

    def _emit_action_value(self, em: Emitter, a: ActionPlan) -> str:
        node = a.node
        if a.kind in ("award_fixed", "award_rate"):
            amount, nullable = em.expr(node.amount)
            if nullable:
                amount = f"_nz({amount})"
            if a.kind == "award_fixed":
                value = amount
            elif node.rate == "item":
                quantity = em.items_quantity(node.items_filter)
                value = quantity if amount == "1" else f"{amount} * {quantity}"
            else:
                if node.items_source:
                    source = em.items_amount(node.items_filter)
                else:
                    source, snull = em.expr(node.source)
                    if snull:
                        source = f"_nz({source})"
                value = source if amount == "1" else f"{amount} * {source}"
                if node.rate == "money" and node.per != 1:
                    value = f"{value} / {self.k.add(node.per)}"
            if node.up_to is not None:
                value = f"min({value}, {self.k.add(runtime.ONE * node.up_to)})"
            em.line(f"{a.slot} = {value}")
            return a.slot
        if a.kind == "multiply":
            factor, nullable = em.expr(node.factor)
            em.line(f"{a.slot} = {factor}" if not nullable else f"{a.slot} = _ONE if {factor} is None else {factor}")
            return a.slot
        if a.kind == "reward":
            args = []
            for _, value in node.args:
                args.append(em.expr(value)[0])
            em.line(f"{a.slot} = ({''.join(x + ', ' for x in args)})")
            return a.slot
        return "None"

    def _emit_accumulate(self, em: Emitter, plan: RulePlan, skip_awards: bool = False) -> None:
        for a in plan.actions:
            b = self.balances.index(a.balance) if a.balance else None
            if a.kind == "award_rate" and not skip_awards:
                em.line(f"_earn{b} += {a.slot}")
            elif a.kind == "award_fixed" and not skip_awards:
                em.line(f"_bonus{b} += {a.slot}")
            elif a.kind == "multiply":
                em.line(f"_mult{b} *= {a.slot}")
            elif a.kind == "cap":
                node = a.node
                em.uses.add("ctx")
                left = (
                    self.k.add(runtime.ONE * node.amount)
                    if node.period == "transaction"
                    else f"_cap_left(_c, {self.k.add(a.balance)}, {self.k.add(node.period)}, {node.amount})"
                )
                em.line(f"_cap{b} = {left} if _cap{b} is None else min(_cap{b}, {left})")
            elif a.kind == "coupon":
                em.line(f"_coupons.append({self.k.add(a.node.coupon.name)})")
            elif a.kind == "set_tier":
                em.line(f"_settier = {self.k.add(a.node.tier.name)}")

    def _emit_best_groups(self, em: Emitter, plans: list[RulePlan]) -> None:
        groups: dict[str, list[RulePlan]] = {}
        for plan in plans:
            if plan.pick == "best":
                groups.setdefault(plan.group, []).append(plan)
        for members in groups.values():
            em.line("_bv = None")
            em.line("_bi = -1")
            for plan in members:
                terms = []
                for a in plan.actions:
                    b = self.balances.index(a.balance) if a.balance else None
                    if a.kind == "award_rate":
                        terms.append(f"{a.slot} * _mult{b}")  # worth what it earns after multipliers
                    elif a.kind == "award_fixed":
                        terms.append(a.slot)
                    elif a.kind == "multiply":
                        terms.append(f"({a.slot} - _ONE) * _earn{b} * _mult{b}")
                value = " + ".join(terms) if terms else "_ZERO"
                with em.block(f"if _r{plan.position} is not None:"):
                    em.line(f"_v = {value}")
                    with em.block("if _bv is None or _v > _bv:"):
                        em.line("_bv = _v")
                        em.line(f"_bi = {plan.position}")
            for plan in members:
                with em.block(f"if _bi == {plan.position}:"):
                    self._emit_accumulate(em, plan, skip_awards=plan.deferred)
                    em.line("pass")
                with em.block("else:"):
                    em.line(f"_r{plan.position} = None")

    def _emit_deferred(self, em: Emitter, plans: list[RulePlan]) -> None:
        deferred = [p for p in plans if p.deferred]
        if not deferred:
            return
        keys: dict[str, str] = {}
        for plan in deferred:
            for key, amount, unit in plan.budgets:
                if unit != "coupons" and key not in keys:
                    var = f"_bud{len(keys)}"
                    keys[key] = var
                    em.line(f"{var} = _budget_left(_c, {self.k.add(key)}, {amount})")
        for plan in deferred:
            with em.block(f"if _r{plan.position} is not None:"):
                em.line("pass")
                for a in plan.actions:
                    if a.kind not in ("award_rate", "award_fixed"):
                        continue
                    b = self.balances.index(a.balance)
                    q = self.k.add(balance_quantum(self.p, a.balance))
                    value = a.slot if a.kind == "award_fixed" else f"({a.slot} * _mult{b})"
                    em.line(f"_p = (_ZERO + {value}).quantize({q}, _RM)")
                    vars_ = [keys[key] for key, _, unit in plan.budgets if unit == a.balance]
                    for var in vars_:
                        em.line(f"_p = min(_p, {var})")
                    for var in vars_:
                        em.line(f"{var} -= _p")
                    em.line(f"_bonus{b} += _p")
                    em.line(f"_fins[({plan.position}, {a.index})] = _p")

    def _emit_totals(self, em: Emitter, used: list[str], plans: list[RulePlan]) -> str:
        out = []
        for b_name in self.balances:
            if b_name not in used:
                out.append(", None, None, None, None, None")
                continue
            b = self.balances.index(b_name)
            q = self.k.add(balance_quantum(self.p, b_name))
            has_rate = any(a.kind == "award_rate" and a.balance == b_name for p in plans for a in p.actions)
            total = f"_earn{b} * _mult{b} + _bonus{b}" if has_rate else f"_bonus{b}"
            em.line(f"_tot{b} = ({total}).quantize({q}, _RM)")
            em.line(f"_cut{b} = _ZERO")
            has_cap = any(a.kind == "cap" and a.balance == b_name for p in plans for a in p.actions)
            if has_cap:
                with em.block(f"if _cap{b} is not None and _tot{b} > _cap{b}:"):
                    em.line(f"_cut{b} = _tot{b} - _cap{b}")
                    em.line(f"_tot{b} = _cap{b}")
            out.append(f", _tot{b}, _mult{b}, _earn{b}, _bonus{b}, _cut{b}")
        return "".join(out)

    # -------------------------------------------------------------- triggers

    def _trigger_plan(self, triggers: list[ast.Trigger]) -> EventPlan:
        plans = [self._plan_rule(t, i) for i, t in enumerate(triggers)]
        em = Emitter(self.p, self.k)
        em.line("_e = None")
        em.line("_coupons = []")
        em.line("_settier = None")
        em.line("_fins = None")
        used = self._balances_used(plans)
        self._init_balances(em, used, tier_multiplier=False)
        for plan in plans:
            self._emit_rule(em, plan)
        totals = self._emit_totals(em, used, plans)
        records = "(" + "".join(f"_r{p.position}, " for p in plans) + ")"
        em.line(f"return (_coupons, {records}, _settier, _fins{totals})")
        prologue = em.prologue(trigger=True)
        source = "\n".join(["def _eval_triggers(_c, as_of):", *prologue, *em.lines])
        return EventPlan("trigger", plans, None, source, self._rule_lines(em, 1 + len(prologue)))
