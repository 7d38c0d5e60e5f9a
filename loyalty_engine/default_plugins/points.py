"""The points effect: ``award ...`` in a rule posts ledger entries to one of the program's balances.

The engine works out each award's amount (rates, multipliers, caps, rounding)
and calls ``apply`` once per rule and balance, with ``ctx.args`` holding
``balance``, ``amount`` and ``lines`` (the weight per cart line, so a return
reverses exactly what its lines earned).
"""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import RewardType


def apply(ctx):
    return ctx.award_points(ctx.args["amount"], ctx.args["balance"], ctx.args["lines"])


@hookimpl
def register_reward_types(register):
    register(
        RewardType(
            "points",
            {"amount": "number", "balance": "text"},
            doc="points (or another declared balance) on the member's ledger",
            apply=apply,
            keyword="award",
        )
    )
