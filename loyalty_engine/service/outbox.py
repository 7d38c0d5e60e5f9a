"""Delivering the outbox: claim, send, mark; retry with backoff; dead-letter what keeps failing.

The guarantee is **at-least-once with an idempotency key**. A dispatcher
claims a batch under a lease (one transaction, so two dispatchers never hold
the same message), sends each message outside any transaction with its
``dedupe_key``, then marks it sent. If it crashes between send and mark, the
lease runs out and the message is sent again with the same key, which the
channel (or the provider behind it) uses to drop the duplicate.

A sender is any object with ``send(message) -> None`` that raises on failure
(:class:`PermanentDeliveryError` when a retry cannot help). Senders are built
from the registered channels and their configuration by :func:`build_senders`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from attrs import define, field

from ..store.base import Message


class Channel(Protocol):
    def send(self, message: Message) -> None:
        """Deliver ``message``; raise to have it retried. ``message.dedupe_key`` identifies it."""


class PermanentDeliveryError(Exception):
    """Raised by a channel when a retry cannot help (no address, a 4xx answer): dead-lettered at once."""


MAX_AGE = dt.timedelta(days=7)  # a message older than this when its turn comes is not sent


@define
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0  # of the dead: older than the maximum age when their turn came, so never tried
    errors: list[str] = field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "dead": self.dead,
            "stale": self.stale,
            "errors": self.errors[:20],
        }


def duration_text(age: dt.timedelta) -> str:
    """``7 days`` rather than ``7 days, 0:00:00``."""
    if age.seconds == 0 and age.microseconds == 0:
        return f"{age.days} day" + ("" if age.days == 1 else "s")
    return str(age)


def backoff(attempt: int, base: float = 30.0, cap: float = 6 * 3600.0, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): exponential, capped, with jitter (50-100%)."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (0.5 + 0.5 * (rng or random).random())


def deliver(
    store,
    channels: Mapping[str, Channel],
    now: dt.datetime,
    *,
    batch: int = 100,
    lease: dt.timedelta = dt.timedelta(minutes=5),
    max_attempts: int = 8,
    max_age: dt.timedelta = MAX_AGE,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send every message that is due on a channel in ``channels``; others stay queued."""
    report = DeliveryReport()
    claim = uuid.uuid4().hex
    names = sorted(channels)
    if not names:
        return report
    while True:
        messages = store.claim_messages(now, lease, batch, claim, names)
        if not messages:
            return report
        for message in messages:
            if now - message.created_at > max_age:  # a birthday greeting a week late does more harm than good
                store.mark_failed(message.id, claim, f"not sent: older than {duration_text(max_age)}", None, True)
                report.dead += 1
                report.stale += 1
                continue
            try:
                channels[message.channel].send(message)
            except Exception as exc:  # a failing channel must not stop the others
                attempts = message.attempts + 1
                dead = (
                    isinstance(exc, PermanentDeliveryError)
                    or attempts >= max_attempts
                    or now - message.created_at > max_age
                )
                retry_at = None if dead else now + dt.timedelta(seconds=backoff(attempts, rng=rng))
                store.mark_failed(message.id, claim, f"{type(exc).__name__}: {exc}", retry_at, dead)
                report.errors.append(f"message {message.id} on {message.channel}: {type(exc).__name__}: {exc}")
                if dead:
                    report.dead += 1
                else:
                    report.retried += 1
                continue
            if store.mark_sent(message.id, claim, now):
                report.sent += 1


def build_senders(
    channels: Mapping[str, Any], config: Mapping[str, Mapping[str, Any]] | None, console_fallback: bool = False
) -> tuple[dict[str, Channel], dict[str, str]]:
    """Senders for the registered ``channels`` (name -> schema Channel) from ``config`` (name -> settings).

    A channel's settings may say ``via = "other"`` to be delivered by another
    channel's sender (``sms`` through a gateway plugin), built from the other
    channel's settings overridden by its own. Returns the senders and,
    per channel left without one, the reason. With ``console_fallback`` those
    print to the console instead (a dry run).
    """
    from ..default_plugins.console import ConsoleSender

    config = config or {}
    senders: dict[str, Channel] = {}
    missing: dict[str, str] = {}
    for name, spec in channels.items():
        own = dict(config.get(name, {}))
        via = own.pop("via", None)
        builder = channels.get(via) if via else spec
        settings = {**config.get(via, {}), **own} if via else own  # the transport's settings, overridden by own
        if via and builder is None:
            missing[name] = f"[channels.{name}] via = '{via}', but no channel '{via}' is installed"
        elif builder.factory is None:
            missing[name] = f"'{name}' needs a transport: set [channels.{name}] via = 'NAME' in the configuration"
        else:
            absent = [key for key in builder.needs if key not in settings]
            if absent:
                missing[name] = f"[channels.{via or name}] needs " + ", ".join(absent)
            else:
                try:
                    senders[name] = builder.factory(settings)
                except Exception as exc:
                    missing[name] = f"[channels.{name}]: {type(exc).__name__}: {exc}"
        if name in missing and console_fallback:
            senders[name] = ConsoleSender()
            del missing[name]
    return senders, missing
