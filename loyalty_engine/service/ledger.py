"""Posting to the ledger: entries, lots, first-in first-out spending, and debts.

Invariants kept here (and checked by the property tests):

- a member's balance is the sum of their ledger entries;
- the open lots of a balance add up to the balance whenever it is not negative;
- a lot never goes below zero.

A debit larger than what is left follows the balance's policy: by default the
balance stops at zero and the shortfall is recorded as a debt, repaid first
from later earnings; with ``points may go negative`` the balance goes below zero.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from decimal import Decimal

from ..program import Program
from ..store.base import LedgerEntry, Lot, MemberRecord
from .history import lot_expiry, new_lot_expiry

ZERO = Decimal(0)
ACTIVITY_KINDS = frozenset({"earn", "redeem", "adjust", "transfer_in", "transfer_out"})


class Ledger:
    """Posts entries for one program on one store (inside the caller's transaction)."""

    def __init__(self, program: Program, store, tz):
        self.program = program
        self.store = store
        self.tz = tz
        self.last_taken: list[tuple[Lot, Decimal]] = []  # the lots the last debit took from, and how much
        self._pending: list[tuple[LedgerEntry, Lot | None]] | None = None  # credits not written yet (grouped())

    @contextmanager
    def grouped(self):
        """Credits posted inside are written together at the end: one INSERT for the entries, one for their lots.

        Balances move at once, as without it; the entries get their ids when written. A debit
        (which reads the open lots) writes what is pending first. Used for the awards of one event.
        """
        if self._pending is not None:  # already grouping
            yield
            return
        self._pending = []
        try:
            yield
            self.flush()
        finally:
            self._pending = None

    def flush(self) -> None:
        """Write the pending credits (inside grouped())."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self.store.add_entries([entry for entry, _ in pending])
        lots = []
        for entry, lot in pending:
            if lot is not None:
                lot.id = entry.id
                lots.append(lot)
        if lots:
            self.store.add_lots(lots)

    def post(
        self,
        record: MemberRecord,
        balance: str,
        kind: str,
        amount: Decimal,
        at: dt.datetime,
        *,
        event: str | None = None,
        rule: str | None = None,
        lines: tuple[Decimal, ...] | None = None,
        reverses: int | None = None,
        reason: str | None = None,
        prefer_lot: int | None = None,
        spend_pending: bool = True,
        expires_on: dt.date | None = None,
    ) -> list[LedgerEntry]:
        """Post ``amount`` (signed) and return the entries written (with a debt entry when one is due)."""
        if amount == 0:
            return []
        day = at.astimezone(self.tz).date()
        if kind in ACTIVITY_KINDS and (record.last_activity is None or at > record.last_activity):
            record.last_activity = at  # earning or spending keeps "expire N after last activity" points alive
        if amount > 0:
            return self._credit(
                record, balance, kind, amount, at, day, event, rule, lines, reverses, reason, expires_on
            )
        return self._debit(
            record, balance, kind, -amount, at, day, event, rule, lines, reverses, reason, prefer_lot, spend_pending
        )

    def _entry(
        self, record, balance, kind, amount, at, day, event, rule, lines, reverses, reason, shortfall=None, defer=False
    ) -> LedgerEntry:
        entry = LedgerEntry(
            record.member.id,
            balance,
            kind,
            amount,
            at,
            day,
            event,
            rule,
            self.program.version,
            lines,
            reverses,
            reason,
            shortfall=shortfall,
        )
        if not defer:
            self.store.add_entries([entry])
        record.balances[balance] = record.balances.get(balance, ZERO) + amount
        return entry

    def _credit(self, record, balance, kind, amount, at, day, event, rule, lines, reverses, reason, expires_on):
        before = record.balances.get(balance, ZERO)
        pending = self._pending
        entry = self._entry(
            record, balance, kind, amount, at, day, event, rule, lines, reverses, reason, defer=pending is not None
        )
        remaining = amount + before if before < 0 else amount  # a negative balance is filled first
        lot = None
        if remaining > 0:
            info = self.program.checked.balances[balance]
            releases = day + dt.timedelta(days=info.pending_days) if info.pending_days and kind == "earn" else None
            expiry = expires_on if expires_on is not None else new_lot_expiry(self.program, record, balance, day)
            lot = Lot(entry.id, record.member.id, balance, amount, remaining, day, releases, expiry)
        if pending is not None:
            pending.append((entry, lot))
        elif lot is not None:
            self.store.add_lots([lot])
        written = [entry]
        debt = record.debts.get(balance, ZERO)
        if debt > 0 and kind not in ("reverse", "debt"):
            repay = min(debt, record.balances[balance])
            if repay > 0:
                record.debts[balance] = debt - repay
                written += self._debit(
                    record,
                    balance,
                    "debt",
                    repay,
                    at,
                    day,
                    event,
                    None,
                    None,
                    None,
                    "repays an earlier shortfall",
                    None,
                    True,
                )
        return written

    def _debit(
        self, record, balance, kind, amount, at, day, event, rule, lines, reverses, reason, prefer_lot, spend_pending
    ):
        if self._pending:
            self.flush()  # the lots it reads, and the entries its moves name, must be written first
        lots = self.spendable(record, balance, day, spend_pending)
        if prefer_lot is not None:
            lots.sort(key=lambda lot: lot.id != prefer_lot)  # its own lot first, then FIFO
        available = sum((lot.remaining for lot in lots), ZERO)
        info = self.program.checked.balances[balance]
        posted = amount
        shortfall = None
        if amount > available and not info.may_go_negative:
            posted = available
            shortfall = amount - available
            record.debts[balance] = record.debts.get(balance, ZERO) + shortfall
            reason = (reason + "; " if reason else "") + f"shortfall {shortfall} recorded as debt"
        entry = self._entry(
            record, balance, kind, -posted if posted else ZERO, at, day, event, rule, lines, reverses, reason, shortfall
        )
        left = min(posted, available)
        touched, moves = [], []
        for lot in lots:
            if left <= 0:
                break
            take = min(lot.remaining, left)
            if take <= 0:
                continue
            lot.remaining -= take
            left -= take
            touched.append(lot)
            moves.append((entry.id, lot.id, take))
        self.store.update_lots(touched, moves)
        self.last_taken = [(lot, take) for (_, _, take), lot in zip(moves, touched)]
        return [entry]

    def spendable(self, record: MemberRecord, balance: str, day: dt.date, spend_pending: bool) -> list[Lot]:
        """Open lots in spending order: soonest expiry first, then oldest."""
        lots = self.store.open_lots(record.member.id, balance)
        if not spend_pending:  # a redemption: only released lots that have not expired (even if not yet swept)
            lots = [lot for lot in lots if self._usable(record, lot, day)]
        far = dt.date.max
        return sorted(lots, key=lambda lot: (lot_expiry(self.program, record, lot) or far, lot.id))

    def _usable(self, record: MemberRecord, lot: Lot, day: dt.date) -> bool:
        if lot.releases_on is not None and lot.releases_on > day:
            return False
        expiry = lot_expiry(self.program, record, lot)
        return expiry is None or expiry > day

    def available(self, record: MemberRecord, balance: str, day: dt.date) -> tuple[Decimal, list[tuple]]:
        """What can be spent today, and the pending lots as ``(release day, amount)``."""
        lots = self.store.open_lots(record.member.id, balance)
        ready = sum((lot.remaining for lot in lots if self._usable(record, lot, day)), ZERO)
        pending = sorted((lot.releases_on, lot.remaining) for lot in lots if lot.releases_on and lot.releases_on > day)
        return ready, pending
