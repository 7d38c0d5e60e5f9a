"""The plugin hooks of loyalty-engine (pluggy).

A plugin is a module or object with functions marked ``@hookimpl`` whose names
are the hooks below. Registration hooks receive a ``register`` callback instead
of returning lists, so the engine decides naming, refuses duplicates and knows
which plugin provided what. Built-in reward types, channels, scoring models and
functions are registered through these same hooks
(``loyalty_engine/default_plugins/``).

Plugins are found through the ``loyalty_engine`` entry-point group, or passed
in code: ``Engine.open(program, store, plugins=[my_plugin])``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "loyalty_engine"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------------ registration (once, when plugins load)


@hookspec
def register_reward_types(register: Callable[[Any], None]) -> None:
    """Register reward types: what ``reward NAME(arg: value, ...)`` in a rule file does.

    Call ``register(RewardType(...))`` once per type. A :class:`~loyalty_engine.RewardType`
    names the effect, declares its arguments and their types (the checker uses
    them), and supplies ``apply`` (called inside the event's store transaction;
    raising rolls the whole event back), optionally ``reverse`` (called on a
    refund with the share of the purchase returned) and ``describe`` (the text of
    the explanation). Called once when the plugins are loaded. Returns nothing.
    """


@hookspec
def register_channels(register: Callable[[Any], None]) -> None:
    """Register message channels: where ``send NAME "text"`` delivers.

    Call ``register(Channel(...))`` once per channel. A :class:`~loyalty_engine.Channel`
    has a name, whether messages carry a subject, which member field is the
    address, and a ``factory(config) -> sender``; the sender's
    ``send(message)`` gets the message with its ``dedupe_key`` and raises to have
    it retried (a timeout counts as a failure). Called once when the plugins are
    loaded. Returns nothing.
    """


@hookspec
def register_scoring_models(register: Callable[[Any], None]) -> None:
    """Register scoring models: what ``score("NAME")`` reads.

    Call ``register(ScoringModel(...))`` once per model. A
    :class:`~loyalty_engine.ScoringModel` declares its name, the type of its value
    (number, money or text), the member facts it reads, and ``score(facts)``
    (optionally ``score_many(list_of_facts)`` for batch work such as the daily
    trigger run). Called once when the plugins are loaded. Returns nothing.
    """


@hookspec
def register_functions(register: Callable[[Any], None]) -> None:
    """Register functions rule files may call, with their signature for the checker.

    Call ``register(Function(...))`` once per function. Called once when the
    plugins are loaded. Returns nothing.
    """


@hookspec
def register_event_types(register: Callable[[str, dict[str, str]], None]) -> None:
    """Register custom event types, e.g. ``review``, ``referral`` or ``check_in``.

    Call ``register(name, {field: type, ...})``; the common fields (id, type,
    member, at, channel, store) are added by the engine. Rule files can then say
    ``rule "..." on NAME`` and read the fields. Called once when the plugins are
    loaded. Returns nothing.
    """


# ------------------------------------------------------------------ processing (per event)


@hookspec
def before_evaluate(event: Any, member: Any, engine: Any) -> None:
    """Called for every event ``Engine.process`` applies, inside its store transaction, before the rules run.

    ``event`` is the structured :class:`~loyalty_engine.Event`, ``member`` the
    :class:`~loyalty_engine.Member` as stored so far. For audit, enrichment
    checks and fraud screens: raising refuses the event, rolls it back whole and
    leaves its id free for a retry. Not called for replays of an event already
    applied. Returns nothing.
    """


@hookspec
def after_commit(event: Any, result: Any, engine: Any) -> None:
    """Called after an event's transaction has committed, with its :class:`~loyalty_engine.Result`.

    For integration (publish to a queue, update a CRM). The event is already
    applied: an exception here is reported in ``engine.plugin_errors`` and does
    not undo it nor stop the other plugins. Not called for replays of an event
    already applied. Returns nothing.
    """
