"""Member filters: what a store is asked to select members by (built by ``service.prefilter``).

Plain data, so each store writes them in its own query language; a store
without a query language can skip them (``iter_members`` then returns everyone,
which is always correct, only slower).
"""

from __future__ import annotations

import datetime as dt

from attrs import frozen

# member paths the store keeps in columns: name -> whether it holds a timestamp (else a date)
DATE_FACTS = {
    "joined": False,
    "birthday": False,
    "tier_since": False,
    "tier_expires": False,  # the grace end, else the next review
    "last_purchase": True,
    "first_purchase": True,
}


@frozen
class DateRange:
    """The member's ``fact`` (its local date) lies in ``[low, high]`` (either end open when None)."""

    fact: str
    low: dt.date | None
    high: dt.date | None

    @property
    def timestamp(self) -> bool:
        return DATE_FACTS[self.fact]


@frozen
class TierIn:
    tiers: tuple[str, ...]


@frozen
class BirthdayOn:
    """The birthday's month and day is one of ``days`` (``"MM-DD"``)."""

    days: tuple[str, ...]


@frozen
class ExpiringBy:
    """The member has an open lot of ``balance`` with a stored expiry on or before ``day``."""

    balance: str
    day: dt.date


@frozen
class AllOf:
    parts: tuple[Predicate, ...]


@frozen
class AnyOf:
    parts: tuple[Predicate, ...]


Predicate = DateRange | TierIn | BirthdayOn | ExpiringBy | AllOf | AnyOf


@frozen
class MemberFilter:
    """The members worth evaluating today: those matching ``candidates`` (an :class:`AnyOf`, one part per
    due trigger). An empty ``AnyOf`` means no trigger is due, so nobody."""

    candidates: AnyOf

    @property
    def nobody(self) -> bool:
        return not self.candidates.parts
