"""Refunds and returns: take back exactly what the returned lines earned, as new ledger entries.

- Lines are matched to the original purchase by SKU, in cart order; an empty
  refund returns everything that is left.
- An entry earned per amount or per item is reversed in proportion to the
  weight of the returned lines; the reversed total is computed cumulatively, so
  several partial returns that add up to everything reverse exactly the entry.
- Fixed bonuses follow the program's policy: by default (``refunds reverse
  bonuses on full return``) they are reversed when the last line comes back;
  ``refunds reverse bonuses`` reverses them pro rata to the returned amount;
  ``refunds keep bonuses`` never does.
- What plugin reward types granted (cashback, miles...) is reversed in
  proportion to the returned share, of the lines it was earned on when its
  arguments sum over items, else of the whole basket.
- On a full return, unredeemed coupons the purchase issued are voided and its
  limit firings freed (unless bonuses are kept).
- Spend statistics drop on the day of the original purchase, so windows and
  tier qualification see the purchase as smaller; the refunded amount counts
  as ``refunds`` on the day of the refund. Once the whole purchase is back it
  no longer counts in ``purchases`` nor its ``nights`` (a visit stays a visit).
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from ..engine.compiler import balance_quantum
from ..errors import RefusedError
from ..model import Event
from ..store.base import MemberRecord
from ..wire import structure_event
from .rewards import reverse_rewards, truncate

ZERO = Decimal(0)
ONE = Decimal(1)
WHOLE = -1  # the "line" under which refunds of a purchase without lines record the amount returned


def _all_returned(original: Event) -> str:
    return f"nothing left to return: purchase '{original.id}' was already returned in full"


def returned_lines(original: Event, refund: Event, already: dict[int, Decimal], notes: list[str]) -> dict[int, Decimal]:
    """Quantities returned now per original line index."""
    left = {i: item.quantity - already.get(i, ZERO) for i, item in enumerate(original.items)}
    if not refund.items:
        rest = {i: q for i, q in left.items() if q > 0}
        if not rest:
            notes.append(_all_returned(original))
        return rest
    out: dict[int, Decimal] = {}
    for item in refund.items:
        lines = [i for i, line in enumerate(original.items) if line.sku == item.sku]
        if not lines:
            raise RefusedError("not_in_purchase", f"SKU '{item.sku}' is not in purchase '{original.id}'")
        wanted = item.quantity
        for i in lines:
            take = min(wanted, left[i] - out.get(i, ZERO))
            if take > 0:
                out[i] = out.get(i, ZERO) + take
                wanted -= take
        if wanted > 0:
            notes.append(f"{wanted} x {item.sku} asked back but not left to return from '{original.id}'")
    return out


def fraction(weights, returned: dict[int, Decimal], items) -> Fraction:
    """Share of ``weights`` covered by the returned quantities, exactly (1/3 stays 1/3)."""
    total = sum((Fraction(w) for w in weights), Fraction(0))
    if total == 0:
        return Fraction(0)
    covered = Fraction(0)
    for i, w in enumerate(weights):
        if w:
            covered += Fraction(w) * min(Fraction(1), Fraction(returned.get(i, ZERO)) / Fraction(items[i].quantity))
    return min(Fraction(1), covered / total)


class Refunds:
    def __init__(self, service):
        self.s = service  # the Engine: program, store, ledger, applier

    def apply(self, record: MemberRecord, refund: Event, stored_original) -> tuple[list, list[str], Decimal]:
        """Reverse what the returned lines earned; returns (entries, notes, refunded amount)."""
        program, store = self.s.program, self.s.store
        if stored_original.kind != "purchase":
            raise RefusedError("not_a_purchase", f"'{refund.original}' is a {stored_original.kind}, not a purchase")
        if stored_original.member != refund.member:
            raise RefusedError(
                "wrong_member", f"purchase '{refund.original}' belongs to member '{stored_original.member}'"
            )
        original = structure_event(json.loads(stored_original.payload), program.event_types)
        notes: list[str] = []
        before = store.returns(original.id)
        if original.items:
            was_full = all(before.get(i, ZERO) >= item.quantity for i, item in enumerate(original.items))
            now = returned_lines(original, refund, before, notes)
            after = {i: before.get(i, ZERO) + now.get(i, ZERO) for i in range(len(original.items))}
            full = all(after[i] >= item.quantity for i, item in enumerate(original.items))
            amounts = tuple(item.amount for item in original.items)
            basket_share = fraction(amounts, after, original.items)
        else:  # a purchase without lines is returned by amount (a refund without an amount returns what is left)
            was_full = before.get(WHOLE, ZERO) >= original.net_amount
            now, basket_share, full = self._by_amount(original, refund, before, notes)
            after = {}
        policy = program.checked.refund_bonuses
        entries = store.entries_for_event(original.id, stored_original.member)
        earned = [e for e in entries if e.kind == "earn"]
        done = store.reversed_amounts([e.id for e in earned])
        written = []
        # Credits first: a cap can leave a rule a negative share, and taking back the positive entries
        # before giving that back would find the balance short and record a debt the credit then misses.
        for entry in sorted(earned, key=lambda e: e.amount > 0):
            if entry.lines is not None:
                share = fraction(entry.lines, after, original.items) if original.items else basket_share
            elif policy == "reverse":
                share = basket_share
            elif policy == "full":
                share = Fraction(1 if full else 0)
            else:
                share = Fraction(0)
            target = (
                entry.amount if share == 1 else _toward_zero(Fraction(entry.amount) * share, program, entry.balance)
            )
            if entry.amount > 0:  # what expired from this entry's points left already: it is not taken twice
                target = min(target, max(ZERO, entry.amount - store.expired_from(entry.id)))
            change = -target - done.get(entry.id, ZERO)
            if change == 0 or (change > 0) == (entry.amount > 0):
                continue
            written += self.s.ledger.post(
                record,
                entry.balance,
                "reverse",
                change,
                refund.at,
                event=refund.id,
                rule=entry.rule,
                reverses=entry.id,
                reason=f"refund of '{original.id}'",
                prefer_lot=entry.id,
            )
            self._release_budget(entry.rule, entry.balance, change)

        def share_of(lines) -> Fraction:  # plugin rewards go back with the returned share, like per-amount points
            return fraction(lines, after, original.items) if lines is not None and original.items else basket_share

        notes += reverse_rewards(self.s, record, original, refund, share_of)
        if full and policy != "keep":
            for coupon in store.coupons_for_event(original.id, stored_original.member):
                if coupon.status in ("issued", "reserved"):
                    coupon.status = "void"
                    store.update_coupon(coupon)
                    self._release_budget(coupon.rule, "coupons", -ONE)  # back in stock, like reversed points
                    notes.append(f"coupon {coupon.code} voided: its purchase was returned")
            store.void_firings(original.id)
        store.add_returns(original.id, refund.id, now)
        refunded = self._statistics(record, original, refund, now, full and not was_full and bool(now))
        return written, notes, refunded

    @staticmethod
    def _by_amount(original: Event, refund: Event, before, notes) -> tuple[dict, Fraction, bool]:
        total = original.net_amount
        already = before.get(WHOLE, ZERO)
        left = max(ZERO, total - already)
        asked = refund.net_amount if refund.net_amount else left
        take = min(asked, left)
        if not left:
            notes.append(_all_returned(original))
        elif asked > take:
            notes.append(f"{asked - take} asked back but only {left} left to refund from '{original.id}'")
        share = Fraction(already + take) / Fraction(total) if total else Fraction(1)
        return ({WHOLE: take} if take else {}), min(Fraction(1), share), already + take >= total

    def _release_budget(self, rule: str | None, balance: str, change: Decimal) -> None:
        plan = self.s.applier.plans.get(rule) if rule else None
        for key, _amount, unit in plan.budgets if plan else ():
            if unit == balance:
                self.s.store.add_budget(key, change)

    def _statistics(self, record, original: Event, refund: Event, now: dict[int, Decimal], whole: bool) -> Decimal:
        """Drop the spend (and, once the whole purchase is back, its purchase and nights) on the purchase's day."""
        if not original.items:
            net = now.get(WHOLE, ZERO)
        else:
            gross = sum((original.items[i].amount * q / original.items[i].quantity for i, q in now.items()), ZERO)
            net = gross * original.net_amount / original.amount if original.amount else ZERO
        net = net.quantize(Decimal("0.0001"))
        drop = {"spend": -net} if net else {}
        if whole:  # a fully returned purchase no longer counts for purchase or night statistics (tiers by them)
            drop["purchases"] = -ONE
            nights = original.attributes.get("nights")
            if nights is not None:
                drop["nights"] = -Decimal(str(nights))
        tz = self.s.tz
        applier = self.s.applier
        applier.add_stats(record, original.at.astimezone(tz).date(), refund.id, drop, None)
        if net:
            applier.add_stats(record, refund.at.astimezone(tz).date(), refund.id, {"refunds": net}, refund.at)
        return net


def _toward_zero(value: Fraction, program, balance: str) -> Decimal:
    return truncate(value, balance_quantum(program.checked, balance))
