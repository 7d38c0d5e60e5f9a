"""Effects through reward types: the context a reward type's ``apply`` gets, the journal, refunds.

Every effect a rule has is applied by a registered :class:`RewardType`: the
built-in ``points``, ``coupon``, ``tier`` and ``message`` types (in
``default_plugins``) and any plugin's type, used as ``reward NAME(...)``. What a
plugin type grants is journalled (``reward_journal``, append-only); a refund
journals the reversal of the returned share and tells the type through its
``reverse`` callback. Anything a plugin raises becomes a :class:`PluginError`
naming the plugin and the rule, and rolls the whole event back.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..errors import LoyaltyError, PluginError
from ..language.schema import RewardType
from ..model import Event, Member
from ..store.base import MemberRecord, RewardEntry

ZERO = Decimal(0)
CORE_PROVIDER = "loyalty_engine."


class RewardContext:
    """What a reward type sees while it is applied, and what it may do.

    Facts: ``member``, ``event`` (None for triggers), ``at``, ``rule``,
    ``location`` ("path:line:col"), ``args`` (the evaluated arguments),
    ``program``, ``reward_type``.
    Actions: :meth:`award_points`, :meth:`issue_coupon`, :meth:`queue_message`,
    :meth:`set_tier`, :meth:`note`; :meth:`balance` reads what the reward
    type has journalled for the member so far (e.g. a wallet).
    """

    __slots__ = (
        "_applier",
        "record",
        "event",
        "at",
        "source",
        "rule",
        "location",
        "args",
        "program",
        "reward_type",
    )

    def __init__(self, applier, record: MemberRecord, event: Event | None, at: dt.datetime, source: str):
        self._applier = applier
        self.record = record
        self.event = event
        self.at = at
        self.source = source
        self.rule: str | None = None
        self.location: str | None = None
        self.args: dict[str, Any] = {}
        self.program = applier.program
        self.reward_type: RewardType | None = None

    @property
    def member(self) -> Member:
        return self.record.member

    def award_points(self, amount: Decimal, balance: str = "points", lines=None) -> list:
        """Post ``amount`` (signed) to one of the program's balances, as ledger entries of this rule."""
        if balance not in self.program.checked.balances:
            raise LoyaltyError(f"'{balance}' is not a balance of this program")
        a = self._applier
        return a.ledger.post(
            self.record, balance, "earn", Decimal(amount), self.at, event=self.source, rule=self.rule, lines=lines
        )

    def issue_coupon(self, template: str) -> str | None:
        """Issue a coupon of one of the program's templates; None (with a note) when its limits say no."""
        return self._applier.issue_coupon(
            self.record, template, self.source, self.rule, self.at, self._next(), self._notes
        )

    def queue_message(self, channel: str, text: str, subject: str | None = None) -> bool:
        """Put a message in the outbox (delivered later by the channel); False when it was queued before."""
        return self._applier.queue_text(
            self.record, channel, text, subject, self.rule, self.source, self.at, self._next()
        )

    def set_tier(self, tier: str, reason: str | None = None) -> None:
        """Move the member to ``tier`` once the event's effects are applied (the last choice wins)."""
        self._applier.state.chosen_tier = (tier, reason or f"set by rule '{self.rule}'")

    def note(self, text: str) -> None:
        """A remark for the result (shown to the caller, e.g. why nothing was granted)."""
        self._notes.append(text)

    def balance(self, reward: str | None = None, unit: str | None = None) -> Decimal:
        """What ``reward`` (default: the one being applied) has journalled for this member, summed."""
        name = reward or (self.reward_type.name if self.reward_type is not None else None)
        totals = self._applier.store.reward_totals(self.record.member.id)
        return sum((v for (r, u), v in totals.items() if r == name and (unit is None or u == unit)), ZERO)

    @property
    def _notes(self) -> list[str]:
        return self._applier.state.notes

    def _next(self) -> int:
        state = self._applier.state
        state.counter += 1
        return state.counter


def run_apply(reward: RewardType, ctx: RewardContext):
    """Call ``reward.apply``; a plugin's failure becomes a PluginError naming the plugin and the rule."""
    try:
        return reward.apply(ctx)
    except LoyaltyError:
        raise
    except Exception as exc:
        if reward.provider.startswith(CORE_PROVIDER):
            raise
        raise PluginError(
            f"reward type '{reward.name}' of plugin '{reward.provider}' failed in rule '{ctx.rule}': "
            f"{type(exc).__name__}: {exc}; the event was not applied (retry it once the plugin is fixed)",
            plugin=reward.provider,
            rule=ctx.rule,
            location=ctx.location,
        ) from exc


def journal(ctx: RewardContext, reward: RewardType, granted, lines) -> RewardEntry | None:
    """Record what a plugin reward type granted (inside the event's transaction)."""
    if granted is None:
        return None
    amount = Decimal(granted)
    entry = RewardEntry(
        reward.name,
        ctx.record.member.id,
        ctx.at,
        amount,
        reward.unit or ctx.program.currency,
        ctx.source,
        ctx.rule,
        ctx.program.version,
        dict(ctx.args),
        lines,
    )
    ctx._applier.store.add_reward_entry(entry)
    return entry


def reverse_rewards(engine, record: MemberRecord, original: Event, refund: Event, share_of) -> list[str]:
    """Journal the reversal of what plugin rewards granted for the returned share of ``original``.

    ``share_of(lines)`` gives the returned share (a Fraction) for an entry's line
    weights (None: the whole basket). Cumulative, like points: several partial
    returns that add up to everything reverse exactly the entry.
    """
    store = engine.store
    entries = [e for e in store.reward_entries_for_event(original.id) if e.reverses is None and e.amount]
    if not entries:
        return []
    done = store.reward_reversed([e.id for e in entries])
    from .apply import _State

    types = engine.program.checked.schema.reward_types
    notes: list[str] = []
    engine.applier.state = _State(notes)  # what a reverse callback notes goes into the refund's result
    for entry in entries:
        share = share_of(entry.lines)
        target = entry.amount if share == 1 else _toward_zero(Fraction(entry.amount) * share, entry.amount)
        change = -target - done.get(entry.id, ZERO)
        if change == 0 or (change > 0) == (entry.amount > 0):
            continue
        reversal = RewardEntry(
            entry.reward,
            entry.member,
            refund.at,
            change,
            entry.unit,
            refund.id,
            entry.rule,
            engine.program.version,
            entry.args,
            None,
            entry.id,
        )
        store.add_reward_entry(reversal)
        reward = types.get(entry.reward)
        if reward is None:
            notes.append(f"{entry.reward} reversal of {-change} journalled; its plugin is no longer installed")
            continue
        if reward.reverse is not None:
            ctx = RewardContext(engine.applier, record, refund, refund.at, refund.id)
            ctx.rule = entry.rule
            ctx.args = dict(entry.args)
            ctx.reward_type = reward  # so ctx.balance() reads this type's journal, as in apply
            try:
                reward.reverse(ctx, entry, change)
            except LoyaltyError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"reward type '{reward.name}' of plugin '{reward.provider}' failed to reverse rule "
                    f"'{entry.rule}' for refund '{refund.id}': {type(exc).__name__}: {exc}",
                    plugin=reward.provider,
                    rule=entry.rule,
                ) from exc
        notes.append(f"{entry.reward}: {change} {entry.unit or ''} reversed".replace("  ", " ").strip())
    return notes


def truncate(value: Fraction, quantum: Decimal) -> Decimal:
    """``value`` cut toward zero to a multiple of ``quantum`` (a reversal never takes back more than was granted)."""
    return Decimal(math.trunc(value / Fraction(quantum))) * quantum


def _toward_zero(value: Fraction, like: Decimal) -> Decimal:
    """``value`` cut toward zero to the decimal places of ``like``."""
    exponent = like.as_tuple().exponent
    return truncate(value, Decimal(1).scaleb(min(0, exponent if isinstance(exponent, int) else 0)))
