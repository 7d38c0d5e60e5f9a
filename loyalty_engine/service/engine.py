"""The engine facade for embedding: one program, one store, atomic and idempotent processing.

>>> engine = Engine.open("dsl/examples/coffee_chain.loy", store=":memory:")   # doctest: +SKIP
>>> engine.process(purchase).points                                           # doctest: +SKIP
>>> engine.member("m-42").balances["points"].available                         # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import json
import threading
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from ..engine.outcome import Outcome
from ..errors import ConflictError, InputError, RefusedError
from ..model import Event, Member
from ..plugins import Plugins, get_plugins
from ..program import Program, load_program
from ..store.base import MemberRecord, Store, StoredEvent
from ..store.sqlite import SQLiteStore
from ..wire import aware_moment, canonical_json, event_and_payload, structure_event, structure_member
from . import coupons as coupon_ops
from . import points as points_ops
from .apply import Applier
from .history import ContextBuilder, shift
from .ledger import Ledger
from .refunds import Refunds
from .results import Result

ZERO = Decimal(0)
# Refusals that depend on another till's moment (not on the member's state) are not remembered for the id.
TRANSIENT_REFUSALS = frozenset({"coupon_reserved"})


def _as_dict(event):
    """A copy of a JSON event to take apart; anything but a mapping goes on as it is, for the wire format
    to refuse as the input error it is."""
    return dict(event) if isinstance(event, Mapping) else event


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def one_at_a_time(method):
    """An engine operation that holds the engine's lock: threads sharing an engine take turns.

    The engine has one store connection, and an operation's writes wait on the engine until its
    transaction ends; two threads inside one engine at once would mix their transactions.
    """

    @functools.wraps(method)
    def serialized(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return serialized


class Engine:
    """Processes events and operations for one program against one store.

    Every method that writes runs in one store transaction and is idempotent on
    its id (the event id, or the ``reference`` of an operation): the same id
    again returns the first result and changes nothing; the same id with a
    different payload raises :class:`ConflictError`. Business refusals raise
    :class:`RefusedError` with a ``code`` and a readable ``reason``.

    Threads may share an engine: its operations take turns, as they share one store
    connection. For operations that run side by side, open an engine per thread or process
    (they may share one database file).
    """

    def __init__(
        self,
        program: Program,
        store: Store,
        clock: Callable[[], dt.datetime] = utc_now,
        remember_refusals: bool = True,
        plugins: Plugins | None = None,
        shadow: Program | None = None,
    ):
        self._lock = threading.RLock()  # see one_at_a_time
        self.program = program
        # The plugins whose hooks run around processing: those the program was checked against, by default.
        self.plugins = plugins or program.checked.schema.plugins or get_plugins()
        self.plugin_errors: list[str] = []  # what after_commit hooks raised (the events stayed applied)
        self.store = store
        self.clock = clock
        # True (the default): a refusal is stored as that id's answer, like a result, so a retry (or a
        # replayed history) gets it again. False: a refused request writes nothing and may be retried.
        self.remember_refusals = remember_refusals
        self.tz = zoneinfo.ZoneInfo(program.timezone)
        self.context = ContextBuilder(program, store)
        self.ledger = Ledger(program, store, self.tz)
        self.applier = Applier(program, store, self.ledger, self.tz)
        self.refunds = Refunds(self)
        sources = {path: "\n".join(lines) for path, lines in program.sources.texts.items()}
        with store.transaction():
            store.ensure_program(program.version, program.name, sources)
        # run_triggers asks the store only for the members a due trigger can fire for (see .prefilter)
        self.trigger_prefilter = True
        self._trigger_filter = None
        self.shadowing = None
        if shadow is not None:
            self.shadow(shadow)

    @property
    def trigger_filter(self):
        if self._trigger_filter is None:
            from .prefilter import TriggerFilter

            self._trigger_filter = TriggerFilter(self.program)
        return self._trigger_filter

    @one_at_a_time
    def shadow(self, candidate: Program | None):
        """Evaluate ``candidate`` beside the live program on every processed event and record where they
        differ (see :mod:`.shadow`); only the live program is applied. ``None`` stops shadowing."""
        from .shadow import Shadow

        self.shadowing = Shadow(self, candidate) if candidate is not None else None
        return self.shadowing

    @classmethod
    def open(
        cls,
        program: Program | str | Path,
        store: Store | str | Path = "loyalty.db",
        *,
        synchronous: str = "FULL",
        clock: Callable[[], dt.datetime] = utc_now,
        plugins: Iterable[Any] | None = None,
    ) -> Engine:
        """Load ``program`` (a path or a loaded Program) and open ``store`` (a Store or a SQLite path).

        ``plugins`` (modules or objects with ``@hookimpl`` functions) are loaded
        beside the built-ins and the installed plugins, and the program is
        checked against what they register.
        """
        manager = Plugins(plugins) if plugins is not None else None
        if not isinstance(program, Program):
            program = load_program(program, schema=manager.schema() if manager else None)
        if isinstance(store, (str, Path)):
            store = SQLiteStore(store, synchronous=synchronous)
        return cls(program, store, clock, plugins=manager)

    @one_at_a_time
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- helpers

    def local_day(self, when: dt.datetime) -> dt.date:
        return when.astimezone(self.tz).date()

    def to_event(self, event: Event | Mapping[str, Any]) -> Event:
        if isinstance(event, Event):
            return event
        return structure_event(_as_dict(event), self.program.event_types)

    def unknown_field_notes(self, event: Event) -> list[str]:
        """A note per field the program does not declare for the event type but spelled like one it does
        (``chanel`` for ``channel``): kept, as extra fields are, but no rule reads it, which is easy to miss."""
        known = self.program.event_types.get(event.type, {})
        notes = []
        for name in event.attributes:
            if name in known:
                continue
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
            if close:
                notes.append(
                    f"field '{name}' is not one this program reads for {event.type} events "
                    f"(did you mean '{close[0]}'?); no rule saw it"
                )
        return notes

    def _check_type(self, event: Event) -> None:
        if event.type not in self.program.event_types:
            raise InputError([("type", f"'{event.type}' is not an event type this program knows")], "event")

    def new_record(self, member: Member | str, at: dt.datetime) -> MemberRecord:
        """A member the store has not seen: joined on the day of ``at`` and at the entry tier."""
        if isinstance(member, str):
            member = Member(member)
        day = self.local_day(at)
        if member.joined is None:
            member = attrs.evolve(member, joined=day)
        record = MemberRecord(member, at)
        tiers = self.program.checked.tiers
        if member.tier is not None:
            self.check_tier(member.tier)
            self.place_in_tier(record, member.tier, member.joined, day)
        elif tiers is not None and tiers.levels and tiers.levels[0].threshold <= 0:
            self.place_in_tier(record, tiers.levels[0].name.name, member.joined, day)
        return record

    def check_tier(self, tier: str) -> None:
        tiers = self.program.checked.tiers
        if tiers is None:  # the program has no tier block: tiers are the POS's business
            return
        names = [lvl.name.name for lvl in tiers.levels]
        if tier not in names:
            raise InputError([("tier", f"'{tier}' is not a tier of this program ({', '.join(names)})")], "member")

    def place_in_tier(self, record: MemberRecord, tier: str, since: dt.date, today: dt.date) -> None:
        """Put a member in ``tier`` from ``since``; the next review is the first one after ``today``."""
        tiers = self.program.checked.tiers
        record.member = attrs.evolve(record.member, tier=tier)
        record.tier_since = since
        record.grace_until = None
        record.tier_review = None
        if tiers is not None and tiers.review is not None:
            review = shift(since, tiers.review.every_months, "month")
            while review <= today:
                review = shift(review, tiers.review.every_months, "month")
            record.tier_review = review

    def _record(self, member_id: str, at: dt.datetime) -> MemberRecord:
        return self.store.load_member(member_id) or self.new_record(member_id, at)

    def existing(self, member_id: str) -> MemberRecord:
        """A member the store knows, or a refusal (``unknown_member``)."""
        record = self.store.load_member(member_id)
        if record is None:
            raise RefusedError("unknown_member", f"member '{member_id}' is not known")
        return record

    def idempotent(self, op_id: str, kind: str, member: str | None, payload: str, apply: Callable[[str], Result]):
        """Run ``apply`` once per ``op_id`` inside one transaction and store its result."""
        if not op_id:
            raise InputError([("id", "an id (or reference) is required so that a retry is not applied twice")], kind)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        try:
            with self.store.transaction():
                stored = self.store.get_event(op_id)
                if stored is not None:
                    if stored.hash != digest:
                        raise ConflictError(op_id)
                    if stored.status == "refused":
                        data = json.loads(stored.outcome)
                        raise RefusedError(data["code"], data["reason"], remembered=True)
                    return Result.from_json(stored.outcome, duplicate=True)
                return apply(digest)
        except RefusedError as exc:
            if exc.remembered or not self.remember_refusals or exc.code in TRANSIENT_REFUSALS:
                raise
            # Whatever the refused request had started is rolled back. Its refusal is the answer for
            # this id: a rerun gets it again, so it cannot apply later (against a later balance) what
            # was refused the first time.
            outcome = json.dumps({"code": exc.code, "reason": exc.reason}, ensure_ascii=False)
            with self.store.transaction():
                if self.store.get_event(op_id) is None:  # unless another process answered it meanwhile
                    self.store.put_event(
                        StoredEvent(
                            op_id, kind, member, digest, None, "refused", payload, outcome, self.program.version
                        )
                    )
            raise

    def store_result(self, result: Result, digest: str, payload: str, at, original=None) -> None:
        """Record ``result`` as the answer for its id (inside the caller's transaction)."""
        self.store.put_event(
            StoredEvent(
                result.id,
                result.kind,
                result.member,
                digest,
                at,
                result.status,
                payload,
                result.to_json(),
                self.program.version,
                original,
            )
        )

    @staticmethod
    def summarise(entries) -> tuple[dict[str, Decimal], tuple[dict, ...]]:
        totals: dict[str, Decimal] = {}
        rows = []
        for e in entries:
            totals[e.balance] = totals.get(e.balance, ZERO) + e.amount
            row = {"balance": e.balance, "kind": e.kind, "amount": e.amount, "rule": e.rule}
            if e.shortfall:
                row["shortfall"] = str(e.shortfall)
            rows.append(row)
        return totals, tuple(rows)

    # -------------------------------------------------------------- events

    @one_at_a_time
    def preview(self, event: Event | Mapping[str, Any], as_of: dt.datetime | None = None) -> Outcome:
        """What ``event`` would earn now, with explanations. Reads the store, writes nothing."""
        ev = self.to_event(event)
        self._check_type(ev)
        record = self._record(ev.member, ev.at)
        context = self.context.build(record, self.local_day(as_of or ev.at))
        return self.program.evaluate(ev, context, as_of)

    @one_at_a_time
    def process(self, event: Event | Mapping[str, Any]) -> Result:
        """Apply ``event`` atomically: all its effects or none. Idempotent on the event id."""
        if isinstance(event, Event):
            ev, payload = event, canonical_json(event)
        else:
            ev, payload = event_and_payload(_as_dict(event), self.program.event_types)
        self._check_type(ev)
        apply = self._refund if ev.type == "refund" else self._apply
        result = self.idempotent(ev.id, ev.type, ev.member, payload, lambda d: apply(ev, payload, d))
        if self.plugins.after_commit and not result.duplicate:
            self.plugin_errors.extend(self.plugins.call_after_commit(ev, result, self))
        return result

    def _apply(self, ev: Event, payload: str, digest: str) -> Result:
        record = self._record(ev.member, ev.at)
        if ev.type == "signup":
            record.member = _signup_fields(record.member, ev)
        if not record.stored:
            self.store.save_member(record)
        if self.plugins.before_evaluate:
            self.plugins.call_before_evaluate(ev, record.member, self)
        context = self.context.build(record, self.local_day(ev.at))
        outcome = self.program.evaluate(ev, context)
        if self.shadowing is not None:  # the candidate sees the member as the live program found them
            self.shadowing.observe(record, ev, outcome)
        entries, coupons, tier, messages, notes = self.applier.apply(record, outcome, ev.id, ev.at, ev)
        score_failures = getattr(context.scores, "errors", None)
        if score_failures:
            notes.extend(score_failures)
        if ev.attributes:
            notes.extend(self.unknown_field_notes(ev))
        if ev.items and ev.type == "purchase":
            lines = sum((item.amount for item in ev.items), ZERO)
            if lines != ev.amount:
                notes.append(
                    f"the amount sent ({ev.amount}) differs from its lines' total ({lines}): rules on amount and "
                    "net_amount used the amount sent, rules on items used the lines"
                )
        earned = sum((e.amount for e in entries if e.balance == "points" and e.kind == "earn"), ZERO)
        self.applier.record_activity(record, ev, earned)
        totals, rows = self.summarise(entries)
        result = Result(
            ev.id,
            ev.type,
            ev.member,
            "applied",
            totals,
            tuple(coupons),
            tier,
            messages,
            rows,
            tuple(notes),
            outcome=outcome,
        )
        self.store_result(result, digest, payload, ev.at)
        for parked in self.store.parked_refunds(ev.id):
            self.store.save_member(record)
            refund = structure_event(json.loads(parked.payload), self.program.event_types)
            try:
                with self.store.transaction():  # a savepoint: a refund that cannot apply must not block its purchase
                    done = self._refund_now(record, refund, parked.id)
            except RefusedError as exc:  # remembered as the refund's answer, like a refusal on arrival
                record = self.store.load_member(ev.member) or record
                answer = json.dumps({"code": exc.code, "reason": exc.reason}, ensure_ascii=False)
                self.store.put_event(
                    StoredEvent(
                        id=parked.id,
                        kind="refund",
                        member=refund.member,
                        hash=parked.hash,
                        at=refund.at,
                        status="refused",
                        payload=parked.payload,
                        outcome=answer,
                        program=self.program.version,
                        original=ev.id,
                    )
                )
                continue
            self.store_result(done, parked.hash, parked.payload, refund.at, ev.id)
        self.store.save_member(record)
        return result

    def _refund(self, ev: Event, payload: str, digest: str) -> Result:
        if not ev.original:
            raise InputError([("original", "a refund must name the purchase it refunds")], "event")
        if self.plugins.before_evaluate:
            self.plugins.call_before_evaluate(ev, self._record(ev.member, ev.at).member, self)
        stored = self.store.get_event(ev.original)
        if stored is None or stored.status == "parked":
            result = Result(
                ev.id, "refund", ev.member, "parked", notes=(f"waiting for purchase '{ev.original}' to arrive",)
            )
            self.store_result(result, digest, payload, ev.at, ev.original)
            return result
        record = self.existing(ev.member)
        result = self._refund_now(record, ev, ev.id)
        self.store_result(result, digest, payload, ev.at, ev.original)
        self.store.save_member(record)
        return result

    def _refund_now(self, record: MemberRecord, ev: Event, refund_id: str) -> Result:
        stored = self.store.get_event(ev.original)
        entries, notes, refunded = self.refunds.apply(record, ev, stored)
        if stored.at is not None and ev.at < stored.at:  # a till clock that is off, most often
            notes.append(
                f"the refund is dated {ev.at.isoformat()}, before its purchase ({stored.at.isoformat()}); "
                "it was applied as sent: check the till's clock"
            )
        totals, rows = self.summarise(entries)
        return Result(
            refund_id,
            "refund",
            ev.member,
            "applied",
            totals,
            (),
            None,
            0,
            rows,
            tuple(notes),
            {"refunded": f"{refunded:.2f}"},
        )

    # -------------------------------------------------------------- points operations

    # Implemented in points.py as functions of the engine; here they become its methods.
    redeem_points = one_at_a_time(points_ops.redeem)
    adjust = one_at_a_time(points_ops.adjust)
    transfer = one_at_a_time(points_ops.transfer)

    def when(self, at: dt.datetime | None) -> dt.datetime:
        """``at``, or now from the engine's clock; always timezone-aware."""
        return aware_moment(at or self.clock())

    # -------------------------------------------------------------- coupons

    @one_at_a_time
    def reserve_coupon(
        self, code: str, checkout: str, at: dt.datetime | None = None, hold: dt.timedelta = dt.timedelta(minutes=15)
    ):
        """Hold a coupon for one checkout, so another till cannot spend it meanwhile."""
        return coupon_ops.reserve(self, code, checkout, self.when(at), hold)

    @one_at_a_time
    def release_coupon(self, code: str, checkout: str, at: dt.datetime | None = None):
        """Give back a coupon a checkout had reserved (e.g. the basket was abandoned)."""
        return coupon_ops.release(self, code, checkout, self.when(at))

    @one_at_a_time
    def redeem_coupon(
        self,
        code: str | None,
        purchase: Event | Mapping[str, Any] | str,
        reference: str | None = None,
        checkout: str | None = None,
        *,
        template: str | None = None,
        member: str | None = None,
    ) -> Result:
        """Spend a coupon on ``purchase``: checks validity, limits, minimum spend and categories.

        ``purchase`` is the basket (an event) or the id of a processed purchase.
        Instead of a ``code``, ``template`` and ``member`` pick the member's oldest
        usable coupon of that template (what an app shows first). Returns a result
        whose ``value["discount"]`` is the amount off.
        """
        basket = purchase if isinstance(purchase, str) else self.to_event(purchase)
        return coupon_ops.redeem(self, code, basket, reference, checkout, template, member)

    # -------------------------------------------------------------- members

    @one_at_a_time
    def upsert_member(self, member: Member | Mapping[str, Any], at: dt.datetime | None = None) -> MemberRecord:
        """Create a member or update their details (name, birthday, contact, attributes)."""
        if not isinstance(member, Member):
            member = structure_member(_as_dict(member), self.program.checked.schema.member_attributes)
        at = self.when(at)
        with self.store.transaction():
            record = self.store.load_member(member.id)
            if record is None:
                record = self.new_record(member, at)
            else:
                current = record.member.tier
                record.member = attrs.evolve(member, tier=current, joined=member.joined or record.member.joined)
                if member.tier is not None and member.tier != current:  # an administrative tier change
                    self.check_tier(member.tier)
                    self.applier.change_tier(record, member.tier, at, "set by a member update", None)
            self.store.save_member(record)
        return record

    @one_at_a_time
    def member(self, member_id: str, at: dt.datetime | None = None):
        """Everything about a member: balances, pending and expiring points, tier progress, coupons, history."""
        from .views import member_view

        return member_view(self, member_id, self.when(at))

    # -------------------------------------------------------------- time-driven work

    @one_at_a_time
    def run_triggers(self, as_of: dt.datetime | dt.date, progress: Callable[[int], None] | None = None):
        """Expiry, tier review and retention triggers for one local day. Safe to run again."""
        from .schedule import run_day

        return run_day(self, as_of, progress)

    def senders(self, config=None, *, console_fallback: bool = False, only=None):
        """Senders for the program's channels from their settings (``{name: {...}}``); see :func:`.outbox.build_senders`.

        Returns ``(senders, missing)``: the senders built, and why each other channel has none.
        """
        from .outbox import build_senders

        channels = self.program.checked.schema.channels
        if only is not None:
            wanted = set(only)
            via = {(config or {}).get(n, {}).get("via") for n in wanted}
            channels = {n: c for n, c in channels.items() if n in wanted or n in via}
        senders, missing = build_senders(channels, config, console_fallback)
        if only is not None:
            senders = {n: s for n, s in senders.items() if n in wanted}
            missing = {n: r for n, r in missing.items() if n in wanted}
        return senders, missing

    @one_at_a_time
    def deliver(self, channels: Mapping[str, Any], now: dt.datetime | None = None, **options):
        """Hand queued messages to senders (``{channel: sender}``), with retries and backoff (see :mod:`.outbox`)."""
        from .outbox import deliver

        return deliver(self.store, channels, self.when(now), **options)


def _signup_fields(member: Member, ev: Event) -> Member:
    changes = {}
    for name in ("name", "email", "phone"):
        if ev.attributes.get(name):
            changes[name] = str(ev.attributes[name])
    if ev.attributes.get("birthday"):
        try:
            changes["birthday"] = dt.date.fromisoformat(str(ev.attributes["birthday"]))
        except ValueError:
            raise InputError(
                [("birthday", f"{ev.attributes['birthday']!r} is not a date (YYYY-MM-DD)")], "event"
            ) from None
    return attrs.evolve(member, **changes) if changes else member
