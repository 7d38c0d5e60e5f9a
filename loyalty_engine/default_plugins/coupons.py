"""The coupon effect: ``issue coupon CODE`` issues a coupon of one of the program's templates."""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import RewardType


def apply(ctx):
    return ctx.issue_coupon(ctx.args["coupon"])


@hookimpl
def register_reward_types(register):
    register(
        RewardType(
            "coupon",
            {"coupon": "text"},
            doc="a coupon from a template (value, validity, usage limits, minimum spend)",
            apply=apply,
            keyword="issue coupon",
        )
    )
