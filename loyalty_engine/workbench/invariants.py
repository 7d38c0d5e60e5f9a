"""Properties that must hold for every purchase, checked with hypothesis on generated carts and members.

The carts and members are built from the program's own vocabulary: the
categories, SKUs, stores, channels and payment methods its rules compare
with, its tiers, balances and declared event fields, and dates around its
campaigns. Every property runs purchases through a real Engine on an
in-memory store (each generated case is a new member), so limits, caps and
refunds behave as in production.

Properties (the keys of ``invariants:`` in a test file):

- ``max_points_per_purchase: N``: no purchase earns more than N points;
- ``points_never_negative``: no purchase takes points away, and the points
  balance never goes below zero;
- ``full_refund_restores_member``: a purchase refunded in full leaves every
  balance, debt and usable coupon as it was (the tier is not compared: a refund
  lowers the statistic but a tier moves down only at its review);
- ``earning_monotone_in_amount``: buying one more unit of a line never earns
  fewer points (a preview, nothing written).

When a property fails, hypothesis shrinks the case to the smallest cart and
member that still break it, and the report shows them with the seed that
reproduces the run (``loyalty test --seed N``).
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from itertools import count
from typing import Any

from attrs import define, field

from ..errors import LoyaltyError
from ..language import ast
from ..program import Program
from .runner import new_engine
from .testfile import Invariants

ZERO = Decimal(0)


class Violation(AssertionError):
    """A property does not hold for a generated case."""


@define
class InvariantResult:
    name: str
    line: int
    ok: bool
    seed: int
    examples: int
    report: list[str] = field(factory=list)


# ------------------------------------------------------------------ the program's vocabulary


@define
class Vocabulary:
    categories: list[str]
    skus: list[str]
    stores: list[str]
    channels: list[str]
    payments: list[str]
    tiers: list[str | None]
    balances: dict[str, bool]  # name -> money
    fields: dict[str, str]  # declared purchase fields -> type
    texts: dict[str, list[str]]  # text field -> literals the rules compare it with
    days: tuple[dt.date, dt.date]
    attributes: dict[str, str]


def _walk(node: Any):
    if node is None or isinstance(node, (str, int, Decimal, bool, dt.date)):
        return
    yield node
    for name in getattr(type(node), "__attrs_attrs__", ()):
        value = getattr(node, name.name)
        if isinstance(value, tuple):
            for v in value:
                yield from _walk(v)
        elif hasattr(type(value), "__attrs_attrs__"):
            yield from _walk(value)


def _compared_texts(program: Program) -> dict[str, set[str]]:
    """Text literals each field name is compared with anywhere in the rules: {"category": {"coffee"}, ...}."""
    found: dict[str, set[str]] = {}
    roots: list[Any] = [*program.checked.rules, *program.checked.triggers]
    for root in roots:
        for node in _walk(root):
            if not isinstance(node, ast.Binary) or node.op not in ("==", "!=", "in", "notin"):
                continue
            if not isinstance(node.left, ast.Path):
                continue
            name = node.left.parts[-1].name
            values = node.right.items if isinstance(node.right, ast.ListExpr) else (node.right,)
            for v in values:
                if isinstance(v, ast.Literal) and v.kind == "text":
                    found.setdefault(name, set()).add(str(v.value))
    return found


def vocabulary(program: Program) -> Vocabulary:
    checked = program.checked
    texts = _compared_texts(program)
    skus = set(texts.get("sku", set()))
    for coupon in checked.coupons.values():
        if coupon.discount_kind == "free_item" and coupon.discount_value:
            skus.add(str(coupon.discount_value))
    dates = [d for r in checked.rules for d in (r.valid_from, r.valid_to) if d]
    dates += [d for c in checked.campaigns.values() for d in (c.valid_from, c.valid_to) if d]
    first = min([dt.date(2026, 1, 1), *dates])
    last = max([dt.date(2026, 12, 31), *dates])
    purchase_fields = checked.schema.event_types.get("purchase", {})
    core = {"id", "type", "member", "at", "channel", "store", "payment", "currency", "amount", "discount"}
    core |= {"net_amount", "items", "original", "referrer"}
    return Vocabulary(
        # a neutral value first: hypothesis shrinks towards the first choice
        categories=["other", *sorted(texts.get("category", set()))],
        skus=sorted(skus),
        stores=["S-OTHER", *sorted(texts.get("store", set()))],
        channels=["store", *sorted(texts.get("channel", set()) - {"store"})],
        payments=["card", *sorted(texts.get("payment", set()) - {"card"})],
        tiers=[None] + [lvl.name.name for lvl in checked.tiers.levels] if checked.tiers else [None],
        balances={name: info.money for name, info in checked.balances.items()},
        fields={k: v for k, v in purchase_fields.items() if k not in core},
        texts={k: sorted(v) for k, v in texts.items()},
        days=(first, last),
        attributes=dict(checked.schema.member_attributes),
    )


# ------------------------------------------------------------------ strategies


def cases(program: Program, vocab: Vocabulary):
    """A strategy of (member row, purchase event without ids) built from the vocabulary."""
    from hypothesis import strategies as st

    tz = zoneinfo.ZoneInfo(program.timezone)
    money = st.integers(min_value=1, max_value=50000).map(lambda cents: Decimal(cents) / 100)

    line = st.fixed_dictionaries(
        {
            "category": st.sampled_from(vocab.categories),
            "quantity": st.integers(min_value=1, max_value=5),
            "unit_price": money.map(lambda d: f"{d:.2f}"),
        },
        optional={"sku": st.sampled_from(vocab.skus)} if vocab.skus else {},
    )
    items = st.lists(line, min_size=1, max_size=5).map(tuple)
    days = (vocab.days[1] - vocab.days[0]).days
    moment = st.tuples(st.integers(0, days), st.integers(7, 22), st.integers(0, 59)).map(
        lambda t: dt.datetime.combine(vocab.days[0] + dt.timedelta(days=t[0]), dt.time(t[1], t[2]), tz)
    )
    extra = {}
    for name, kind in vocab.fields.items():
        if kind == "money":
            extra[name] = money.map(lambda d: f"{d:.2f}")
        elif kind == "number":
            extra[name] = st.integers(0, 10)
        elif kind == "boolean":
            extra[name] = st.booleans()
        elif kind == "text":
            extra[name] = st.sampled_from(["X", *vocab.texts.get(name, [])])
    event = st.fixed_dictionaries(
        {
            "at": moment,
            "items": items,
            "store": st.sampled_from(vocab.stores),
            "channel": st.sampled_from(vocab.channels),
            "payment": st.sampled_from(vocab.payments),
        },
        optional=extra,
    )
    balances = st.fixed_dictionaries(
        {},
        optional={
            name: (money.map(lambda d: str(d)) if is_money else st.integers(0, 20000))
            for name, is_money in vocab.balances.items()
        },
    )
    member = st.fixed_dictionaries(
        {"tier": st.sampled_from(vocab.tiers), "balances": balances},
        optional={
            "birthday": st.dates(dt.date(1950, 1, 1), dt.date(2008, 12, 31)).map(dt.date.isoformat),
            "joined_days_before": st.integers(0, 800),
            "qualifying": st.fixed_dictionaries({"spend": money.map(str)}),
        },
    )
    return st.tuples(member, event)


# ------------------------------------------------------------------ the properties


class _Bench:
    """One engine for a property run; every case is a new member on it."""

    def __init__(self, program: Program):
        self.program = program
        self.engine, self.clock = new_engine(program, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        self.ids = count(1)

    def setup(self, member: dict, event: dict) -> tuple[str, dict]:
        from ..service.imports import import_row

        n = next(self.ids)
        member_id = f"gen-{n}"
        at: dt.datetime = event["at"]
        row = {k: v for k, v in member.items() if k != "joined_days_before" and v is not None}
        row["id"] = member_id
        row["joined"] = (at.date() - dt.timedelta(days=member.get("joined_days_before", 30))).isoformat()
        self.clock.now = at
        import_row(self.engine, row, at - dt.timedelta(seconds=1))
        data = dict(
            event,
            at=at.isoformat(),
            items=[dict(it, sku=it.get("sku", f"SKU-{i}")) for i, it in enumerate(event["items"])],
        )
        data.update(id=f"p-{n}", type="purchase", member=member_id)
        return member_id, data

    def state(self, member_id: str) -> dict:
        record = self.engine.store.load_member(member_id)
        coupons = sorted(c.template for c in self.engine.store.coupons(member_id) if c.status == "issued")
        balances = {b: v for b, v in record.balances.items() if v}
        debts = {b: v for b, v in record.debts.items() if v}
        return {"balances": balances, "debts": debts, "coupons": coupons}

    def close(self) -> None:
        self.engine.close()


def _max_points(limit: int) -> Callable[[_Bench, dict, dict], None]:
    def check(bench: _Bench, member: dict, event: dict) -> None:
        _, data = bench.setup(member, event)
        points = bench.engine.process(data).points
        if points > limit:
            raise Violation(f"the purchase earned {points} points, more than {limit}")

    return check


def _never_negative(bench: _Bench, member: dict, event: dict) -> None:
    member_id, data = bench.setup(member, event)
    result = bench.engine.process(data)
    if result.points < 0:
        raise Violation(f"the purchase earned {result.points} points")
    balance = bench.engine.store.load_member(member_id).balances.get("points", ZERO)
    if balance < 0:
        raise Violation(f"the points balance went to {balance}")


def _refund_restores(bench: _Bench, member: dict, event: dict) -> None:
    member_id, data = bench.setup(member, event)
    before = bench.state(member_id)
    bench.engine.process(data)
    refund = {
        "id": f"r-{data['id']}",
        "type": "refund",
        "original": data["id"],
        "member": member_id,
        "at": data["at"],
        "items": [{"sku": it["sku"], "quantity": it["quantity"]} for it in data["items"]],
    }
    bench.engine.process(refund)
    after = bench.state(member_id)
    if after != before:
        raise Violation(f"before the purchase: {_show_state(before)}; after its full refund: {_show_state(after)}")


def _monotone(bench: _Bench, member: dict, event: dict) -> None:
    _, data = bench.setup(member, event)
    base = bench.engine.preview(data).points
    for i in range(len(data["items"])):
        items = [dict(it) for it in data["items"]]
        items[i]["quantity"] += 1
        more = bench.engine.preview(dict(data, items=items)).points
        if more < base:
            raise Violation(f"{base} points for the cart, but {more} with one more unit of line {i + 1}")


def _show_state(state: dict) -> str:
    parts = [f"{b} {v}" for b, v in state["balances"].items()] or ["no balance"]
    parts += [f"debt {b} {v}" for b, v in state["debts"].items()]
    parts.append("coupons " + (", ".join(state["coupons"]) or "none"))
    return ", ".join(parts)


def properties(inv: Invariants) -> list[tuple[str, Callable]]:
    out: list[tuple[str, Callable]] = []
    if inv.max_points_per_purchase is not None:
        out.append(
            (f"max_points_per_purchase: {inv.max_points_per_purchase}", _max_points(inv.max_points_per_purchase))
        )
    if inv.points_never_negative:
        out.append(("points_never_negative", _never_negative))
    if inv.full_refund_restores_member:
        out.append(("full_refund_restores_member", _refund_restores))
    if inv.earning_monotone_in_amount:
        out.append(("earning_monotone_in_amount", _monotone))
    return out


# ------------------------------------------------------------------ running them


def check_invariants(
    program: Program, inv: Invariants, seed: int | None = None, max_examples: int | None = None
) -> list[InvariantResult]:
    try:
        import hypothesis  # noqa: F401
    except ImportError:  # pragma: no cover - hypothesis is a dependency; a stripped install says what to do
        return [
            InvariantResult(
                "(all)", inv.line, False, 0, 0, ["invariants need hypothesis: pip install 'hypothesis>=6.100'"]
            )
        ]
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    vocab = vocabulary(program)
    strategy = cases(program, vocab)
    n = max_examples or inv.examples
    return [_run(program, name, check, strategy, seed, n, inv.line) for name, check in properties(inv)]


def _run(program, name, check, strategy, seed, n, line) -> InvariantResult:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as with_seed

    bench = _Bench(program)
    failing: dict[str, Any] = {}

    @with_seed(seed)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),  # no 'explain': the report says why
    )
    @given(strategy)
    def prop(case):
        member, event = case
        try:
            check(bench, member, event)
        except Violation as exc:
            failing.update(case=case, why=str(exc))
            raise
        except LoyaltyError as exc:
            failing.update(case=case, why=f"the engine refused it: {exc}")
            raise Violation(str(exc)) from exc

    try:
        prop()
    except Violation:
        return InvariantResult(name, line, False, seed, n, _counterexample(failing, seed))
    finally:
        bench.close()
    return InvariantResult(name, line, True, seed, n)


def _counterexample(failing: dict, seed: int) -> list[str]:
    member, event = failing["case"]
    lines = [f"broken: {failing['why']}", "smallest counterexample:"]
    shown_member = {k: v for k, v in member.items() if v not in (None, {})}
    lines.append(
        f"  member: {_flow(shown_member)}" if shown_member else "  member: a new member (no tier, balance or history)"
    )
    lines.append(
        f"  purchase at {event['at'].isoformat()}: {_flow({k: v for k, v in event.items() if k not in ('at', 'items')})}"
    )
    for it in event["items"]:
        lines.append(f"    - {_flow(it)}")
    lines.append(f"rerun it with: loyalty test --seed {seed}")
    return lines


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"
