"""loyalty-engine: an embeddable rules engine for loyalty programs.

Load a program once, evaluate many events::

    program = load_program("rules.loy")
    outcome = program.evaluate(structure_event(data, program.event_types), context)
    outcome.points, outcome.coupons, outcome.explanations
"""

from .engine.effects import Effect
from .engine.outcome import Outcome
from .errors import EvaluationError, InputError, LoyaltyError, RuleFileError
from .language.schema import Schema, default_schema
from .model import Event, LineItem, Member, MemberContext
from .program import Program, check_program, evaluate, load_program
from .wire import structure_context, structure_event, structure_member

__version__ = "0.1.0"

__all__ = [
    "Effect",
    "Event",
    "EvaluationError",
    "InputError",
    "LineItem",
    "LoyaltyError",
    "Member",
    "MemberContext",
    "Outcome",
    "Program",
    "RuleFileError",
    "Schema",
    "check_program",
    "default_schema",
    "evaluate",
    "load_program",
    "structure_context",
    "structure_event",
    "structure_member",
]
