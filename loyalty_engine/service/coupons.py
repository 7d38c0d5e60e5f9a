"""Coupon redemption at the till: reserve for a checkout, release, or redeem against a purchase.

A coupon is single-use. Redeeming checks, in order: the code exists, it
belongs to the purchase's member, it is not void or used, no other checkout
holds it, it is within its validity, the template's redemption limits, the
basket has eligible lines, and the eligible amount reaches the minimum spend.
Each refusal is a :class:`RefusedError` with a code and a readable reason.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal

from ..errors import InputError, RefusedError
from ..model import Event
from ..store.base import CouponRecord
from ..wire import canonical_json
from .results import Result

ZERO = Decimal(0)
CENT = Decimal("0.01")


def _load(engine, code: str) -> CouponRecord:
    coupon = engine.store.get_coupon(code)
    if coupon is None:
        raise RefusedError("unknown_coupon", f"coupon '{code}' does not exist")
    return coupon


def _usable(engine, coupon: CouponRecord, at: dt.datetime, checkout: str | None) -> None:
    if coupon.status == "void":
        raise RefusedError("coupon_void", f"coupon '{coupon.code}' was cancelled")
    if coupon.status == "redeemed":
        when = coupon.redeemed_at.isoformat() if coupon.redeemed_at else "earlier"
        raise RefusedError("coupon_used", f"coupon '{coupon.code}' was already used ({when})")
    _not_held_by_another(coupon, at, checkout)
    day = engine.local_day(at)
    if coupon.valid_until is not None and day > coupon.valid_until:
        raise RefusedError("coupon_expired", f"coupon '{coupon.code}' expired after {coupon.valid_until.isoformat()}")


def _not_held_by_another(coupon: CouponRecord, at: dt.datetime, checkout: str | None) -> None:
    held = coupon.status == "reserved" and coupon.reserved_until and coupon.reserved_until > at
    if held and coupon.reserved_by != checkout:
        raise RefusedError(
            "coupon_reserved",
            f"coupon '{coupon.code}' is held by checkout '{coupon.reserved_by}' until {coupon.reserved_until.isoformat()}",
        )


def reserve(engine, code: str, checkout: str, at: dt.datetime, hold: dt.timedelta) -> CouponRecord:
    problems = []
    if not isinstance(checkout, str) or not checkout.strip():
        # a blank checkout would hold the coupon for every till that names none
        problems.append(("checkout", f"name the checkout that holds the coupon (got {checkout!r})"))
    if not isinstance(hold, dt.timedelta) or hold <= dt.timedelta(0):
        problems.append(("hold", f"must be a positive timedelta (got {hold!r})"))
    if problems:
        raise InputError(problems, "reservation")
    with engine.store.transaction():
        coupon = _load(engine, code)
        _usable(engine, coupon, at, checkout)
        coupon.status = "reserved"
        coupon.reserved_by = checkout
        coupon.reserved_until = at + hold
        engine.store.update_coupon(coupon)
    return coupon


def release(engine, code: str, checkout: str, at: dt.datetime) -> CouponRecord:
    """Give back ``checkout``'s hold on a coupon. Releasing a coupon no one holds (or whose hold ran out)
    changes nothing, so a retried release is harmless; another checkout's live hold is refused
    (``coupon_reserved``): that till would lose the coupon it is about to spend."""
    with engine.store.transaction():
        coupon = _load(engine, code)
        _not_held_by_another(coupon, at, checkout)
        if coupon.status == "reserved" and coupon.reserved_by == checkout:
            coupon.status = "issued"
            coupon.reserved_by = None
            coupon.reserved_until = None
            engine.store.update_coupon(coupon)
    return coupon


def discount_for(template, purchase: Event) -> tuple[Decimal, Decimal]:
    """(eligible amount, discount) of a template on a basket."""
    lines = [i for i in purchase.items if not template.categories or i.category in template.categories]
    eligible = sum((i.amount for i in lines), ZERO) if purchase.items else purchase.net_amount
    if template.discount_kind == "percent":
        value = (eligible * Decimal(template.discount_value) / 100).quantize(CENT, ROUND_HALF_UP)
    elif template.discount_kind == "amount":
        value = min(Decimal(template.discount_value), eligible)
    elif template.discount_kind == "free_item":
        match = [i for i in lines if i.sku == template.discount_value]
        value = match[0].unit_price if match else ZERO
    else:
        value = ZERO
    return eligible, value


def redeem(
    engine,
    code: str | None,
    purchase: Event | str,
    reference: str | None,
    checkout: str | None,
    template: str | None = None,
    member: str | None = None,
) -> Result:
    """Redeem ``code`` (or the member's oldest usable coupon of ``template``) on ``purchase``.

    ``purchase`` is the basket, or the id of a processed purchase. Both lookups
    happen inside the idempotent transaction, so their refusals are remembered too.
    """
    if code is None and (template is None or member is None):
        raise InputError([("code", "give a coupon code, or a member and a coupon template")], "coupon")
    basket_id = purchase if isinstance(purchase, str) else purchase.id
    reference = reference or f"coupon:{code or template}:{basket_id}"
    what = {"code": code} if code else {"template": template, "member": member}
    shown = json.dumps(purchase) if isinstance(purchase, str) else canonical_json(purchase)
    payload = json.dumps(what, sort_keys=True, ensure_ascii=False)[:-1] + f',"purchase":{shown}}}'
    owner = member if isinstance(purchase, str) else purchase.member

    def apply(digest: str) -> Result:
        basket = _basket(engine, purchase)
        coupon = _load(engine, code) if code else _oldest(engine, member, template, basket)
        return _spend(engine, coupon, basket, reference, checkout, digest, payload)

    return engine.idempotent(reference, "coupon", owner, payload, apply)


def _basket(engine, purchase: Event | str) -> Event:
    if not isinstance(purchase, str):
        return purchase
    stored = engine.store.get_event(purchase)
    if stored is None or stored.kind != "purchase":
        raise RefusedError("unknown_purchase", f"purchase '{purchase}' has not been processed")
    return engine.to_event(json.loads(stored.payload))


def _oldest(engine, member: str, template: str, purchase: Event) -> CouponRecord:
    coupon = engine.store.find_coupon(member, template, engine.local_day(purchase.at))
    if coupon is None:
        raise RefusedError("no_coupon", f"member '{member}' has no usable {template} coupon")
    return coupon


def _spend(engine, coupon: CouponRecord, purchase: Event, reference, checkout, digest, payload) -> Result:
    code = coupon.code
    if coupon.member != purchase.member:
        raise RefusedError("wrong_member", f"coupon '{code}' belongs to another member")
    _usable(engine, coupon, purchase.at, checkout)
    template = engine.program.checked.coupons.get(coupon.template)
    if template is None:
        raise RefusedError("unknown_template", f"coupon template '{coupon.template}' is not in this program")
    eligible, discount = discount_for(template, purchase)
    if template.categories and eligible == 0:
        raise RefusedError(
            "not_eligible", f"coupon '{code}' applies only to {', '.join(template.categories)}; none in the basket"
        )
    if template.discount_kind == "free_item" and discount == 0:
        raise RefusedError("not_eligible", f"coupon '{code}' is for '{template.discount_value}', not in the basket")
    if template.min_spend is not None and eligible < template.min_spend:
        raise RefusedError(
            "min_spend",
            f"coupon '{code}' needs a spend of {template.min_spend}; the basket has {eligible} "
            f"(spend {template.min_spend - eligible} more)",
        )
    coupon.status = "redeemed"
    coupon.redeemed_at = purchase.at
    coupon.redeemed_ref = reference
    coupon.discount = discount
    coupon.reserved_by = None
    coupon.reserved_until = None
    engine.store.update_coupon(coupon)
    value = {"code": code, "template": coupon.template, "discount": str(discount), "purchase": purchase.id}
    result = Result(reference, "coupon", purchase.member, "applied", value=value)
    engine.store_result(result, digest, payload, purchase.at)
    return result
