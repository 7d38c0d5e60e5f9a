"""The tier effect: ``set tier NAME`` moves the member to a tier once the event's effects are applied."""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import RewardType


def apply(ctx):
    ctx.set_tier(ctx.args["tier"])


@hookimpl
def register_reward_types(register):
    register(
        RewardType(
            "tier", {"tier": "text"}, doc="a tier change, recorded in the tier history", apply=apply, keyword="set tier"
        )
    )
