"""loyalty-engine: an embeddable rules engine for loyalty programs.

Load a program once, evaluate many events::

    program = load_program("rules.loy")
    outcome = program.evaluate(structure_event(data, program.event_types), context)
    outcome.points, outcome.coupons, outcome.explanations

Keep state (ledger, tiers, coupons, triggers) in the embedded SQLite store::

    engine = Engine.open("rules.loy", "loyalty.db")
    engine.process(purchase).points      # atomic, idempotent on the event id
    engine.member("m-42").balances

Extend it with plugins (reward types, channels, scoring models, functions,
event types): ``from loyalty_engine import hookimpl`` (docs/plugins.md).
"""

from .engine.effects import Effect
from .engine.outcome import Outcome
from .engine.trace import Trace
from .errors import (
    ConflictError,
    EvaluationError,
    InputError,
    LoyaltyError,
    PluginError,
    RefusedError,
    RuleFileError,
    StoreError,
)
from .hookspecs import hookimpl
from .language.schema import Channel, Function, RewardType, Schema, ScoringModel, default_schema
from .model import Event, LineItem, Member, MemberContext
from .program import Program, check_program, evaluate, load_program
from .service.engine import Engine
from .service.results import Result
from .service.rewards import RewardContext
from .store import SQLiteStore, Store
from .wire import structure_context, structure_event, structure_member

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "ConflictError",
    "Effect",
    "Engine",
    "Event",
    "EvaluationError",
    "Function",
    "InputError",
    "LineItem",
    "LoyaltyError",
    "Member",
    "MemberContext",
    "Outcome",
    "PluginError",
    "Program",
    "RefusedError",
    "Result",
    "RewardContext",
    "RewardType",
    "RuleFileError",
    "SQLiteStore",
    "Schema",
    "ScoringModel",
    "Store",
    "StoreError",
    "Trace",
    "check_program",
    "default_schema",
    "evaluate",
    "hookimpl",
    "load_program",
    "structure_context",
    "structure_event",
    "structure_member",
]
