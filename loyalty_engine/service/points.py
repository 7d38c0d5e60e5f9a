"""Points operations: redeem, adjust and transfer, each idempotent on its reference.

A redemption takes the points that expire soonest first and may only spend
released, unexpired points; a transfer moves points with the expiry they had.
Refusals are :class:`RefusedError` with a code (``insufficient_balance``,
``unknown_member``, ``not_transferable``, ``same_member``).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from ..errors import InputError, RefusedError
from ..wire import aware_moment
from .history import lot_expiry
from .results import Result

ZERO = Decimal(0)


def _op_payload(kind: str, **fields) -> str:
    """The payload an operation's reference is checked against (a time the clock chose is left out)."""
    data = {
        k: (format(v.normalize(), "f") if isinstance(v, Decimal) else v) for k, v in fields.items() if v is not None
    }
    data["kind"] = kind
    if data.get("at") is not None:
        data["at"] = aware_moment(data["at"]).isoformat()
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def redeem(
    engine,
    member: str,
    points: Decimal | int | str,
    reference: str,
    balance: str = "points",
    at: dt.datetime | None = None,
) -> Result:
    """Spend ``points`` (first the ones that expire soonest). Refused when the balance is short."""
    amount = amount_of(engine, points, balance, "points")
    payload = _op_payload("redeem", member=member, points=amount, balance=balance, at=at)
    at = engine.when(at)

    def apply(digest: str) -> Result:
        record = engine.existing(member)
        day = engine.local_day(at)
        _require_available(engine, record, balance, amount, day)
        entries = engine.ledger.post(record, balance, "redeem", -amount, at, event=reference, spend_pending=False)
        stats = {"points_redeemed": amount} if balance == "points" else {}
        engine.applier.add_stats(record, day, reference, stats, at)
        return _settle(engine, [record], entries, reference, "redeem", member, digest, payload, at)

    return engine.idempotent(reference, "redeem", member, payload, apply)


def _require_available(engine, record, balance: str, amount: Decimal, day: dt.date) -> None:
    """Refuse (``insufficient_balance``) unless ``amount`` is released, unexpired and there to spend."""
    available, pending = engine.ledger.available(record, balance, day)
    if amount > available:
        waiting = sum((a for _, a in pending), ZERO)
        more = f" ({waiting} more pending)" if waiting else ""
        raise RefusedError(
            "insufficient_balance",
            f"member '{record.member.id}' has {available} {balance} available{more}; {amount} asked",
        )


def _settle(engine, records, entries, reference, kind, member, digest, payload, at) -> Result:
    """Save the members, and store and return the operation's result."""
    for record in records:
        engine.store.save_member(record)
    totals, rows = engine.summarise(entries)
    result = Result(reference, kind, member, "applied", totals, entries=rows)
    engine.store_result(result, digest, payload, at)
    return result


def adjust(
    engine,
    member: str,
    points: Decimal | int | str,
    reason: str,
    reference: str,
    balance: str = "points",
    at: dt.datetime | None = None,
) -> Result:
    """A manual correction (positive or negative) with its reason, as its own ledger entry."""
    amount = amount_of(engine, points, balance, "points", signed=True)
    if not reason or not str(reason).strip():
        raise InputError([("reason", "an adjustment needs a reason")], "adjustment")
    payload = _op_payload("adjust", member=member, points=amount, balance=balance, reason=reason, at=at)
    at = engine.when(at)

    def apply(digest: str) -> Result:
        record = engine.existing(member)
        entries = engine.ledger.post(record, balance, "adjust", amount, at, event=reference, reason=reason)
        return _settle(engine, [record], entries, reference, "adjust", member, digest, payload, at)

    return engine.idempotent(reference, "adjust", member, payload, apply)


def transfer(
    engine,
    from_member: str,
    to_member: str,
    points: Decimal | int | str,
    reference: str,
    balance: str = "points",
    at: dt.datetime | None = None,
) -> Result:
    """Move points between two members, where the program says ``points can be transferred``."""
    amount = amount_of(engine, points, balance, "points")
    info = engine.program.checked.balances.get(balance)
    if info is None or not info.transferable:
        raise RefusedError(
            "not_transferable",
            f"this program does not allow {balance} to be transferred (add '{balance} can be "
            "transferred' to the program block)",
        )
    if from_member == to_member:
        raise RefusedError("same_member", "a transfer needs two different members")
    payload = _op_payload("transfer", member=from_member, to=to_member, points=amount, balance=balance, at=at)
    at = engine.when(at)

    def apply(digest: str) -> Result:
        source = engine.existing(from_member)
        target = engine.existing(to_member)
        _require_available(engine, source, balance, amount, engine.local_day(at))
        out = engine.ledger.post(
            source,
            balance,
            "transfer_out",
            -amount,
            at,
            event=reference,
            reason=f"to {to_member}",
            spend_pending=False,
        )
        into = []
        for lot, take in list(engine.ledger.last_taken):  # the points keep the expiry they had
            expires = lot_expiry(engine.program, source, lot) if lot.expires_on is not None else None
            into += engine.ledger.post(
                target,
                balance,
                "transfer_in",
                take,
                at,
                event=reference,
                reason=f"from {from_member}",
                expires_on=expires,
            )
        for record in (source, target):
            engine.store.save_member(record)
        totals, rows = engine.summarise(out)
        result = Result(reference, "transfer", from_member, "applied", totals, entries=rows + engine.summarise(into)[1])
        engine.store_result(result, digest, payload, at)
        return result

    return engine.idempotent(reference, "transfer", from_member, payload, apply)


def amount_of(engine, value, balance: str, what: str, signed: bool = False) -> Decimal:
    """``value`` as an amount of ``balance``: a positive (or, ``signed``, non-zero) number, whole for points."""
    if balance not in engine.program.checked.balances:
        raise InputError([("balance", f"'{balance}' is not a balance of this program")], what)
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InputError([(what, f"{value!r} is not a number")], what) from None
    if not amount.is_finite() or (amount <= 0 and not signed) or amount == 0:
        raise InputError([(what, f"must be {'non-zero' if signed else 'positive'} (got {value})")], what)
    if not engine.program.checked.balances[balance].money and amount != amount.to_integral_value():
        raise InputError([(what, f"{balance} are whole numbers (got {value})")], what)
    return amount
