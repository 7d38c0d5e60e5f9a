"""One test per hook of loyalty_engine/hookspecs.py, named after it (the meta-test in test_plugin_guide.py checks).

Each builds a throwaway plugin object, loads it beside the built-ins only
(``entry_points=False`` through the author kit), and checks what the hook does
for a real engine on an in-memory store.
"""

from decimal import Decimal

from loyalty_engine import RewardType, hookimpl
from loyalty_engine.testing import engine_for, purchase, refund

BASKET = (("LATTE", "coffee", 2, "32.00"), ("CAKE", "food", 1, "36.00"))


class Stamps:
    """A reward type journalling stamps, one per 10 of net amount, with a reverse callback that notes."""

    def __init__(self):
        self.reversed = []

    @hookimpl
    def register_reward_types(self, register):
        def reverse(ctx, entry, amount):
            self.reversed.append((entry.amount, amount, ctx.event.id))
            ctx.note(f"stamps: {-amount} taken back for '{ctx.rule}'")

        register(
            RewardType(
                "stamp_card",
                {"stamps": "number"},
                required=frozenset({"stamps"}),
                apply=lambda ctx: int(ctx.args["stamps"]),
                reverse=reverse,
                unit="stamps",
            )
        )


def test_register_reward_types_reverse_notes_reach_the_refund_result():
    plugin = Stamps()
    engine = engine_for('rule "Card" on purchase { reward stamp_card(stamps: 10) }', [plugin])
    engine.process(purchase("t-1", "m-1", *BASKET))
    result = engine.process(refund("r-1", "t-1", "m-1", ("CAKE", 1)))  # 36 of 100 back
    assert plugin.reversed == [(Decimal(10), Decimal(-3), "r-1")]
    assert result.notes[0] == "stamps: 3 taken back for 'Card'"
    assert engine.member("m-1").rewards["stamp_card"]["stamps"] == 7
