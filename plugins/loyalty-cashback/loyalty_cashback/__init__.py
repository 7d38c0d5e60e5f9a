"""loyalty-cashback: a ``cashback`` reward type crediting a stored-value wallet, reversed on refunds."""

from decimal import ROUND_DOWN, Decimal

from loyalty_engine import RewardType, hookimpl

CENT = Decimal("0.01")


def apply(ctx):
    """Credit the wallet: the rule's amount cut down to cents and to ``max``; the engine journals it."""
    amount = Decimal(ctx.args["amount"]).quantize(CENT, rounding=ROUND_DOWN)
    cap = ctx.args.get("max")
    if cap is not None:
        amount = min(amount, Decimal(cap))
    if amount <= 0:
        ctx.note(f"cashback: nothing granted by rule '{ctx.rule}' (amount {amount})")
        return None
    return amount


def describe(args) -> str:
    cap = f", at most {args['max']}" if args.get("max") is not None else ""
    return f"cashback of {Decimal(args['amount']).quantize(CENT, rounding=ROUND_DOWN)} into the wallet{cap}"


@hookimpl
def register_reward_types(register):
    register(
        RewardType(
            "cashback",
            {"amount": "money", "max": "money"},
            required=frozenset({"amount"}),
            doc="cashback into the member's stored-value wallet (program currency), reversed on refunds",
            apply=apply,
            describe=describe,
        )
    )
