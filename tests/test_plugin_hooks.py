"""One test per hook of loyalty_engine/hookspecs.py, named after it (the meta-test in test_plugin_guide.py checks).

Each builds a throwaway plugin object, loads it beside the built-ins only
(``entry_points=False`` through the author kit), and checks what the hook does
for a real engine on an in-memory store.
"""

from decimal import Decimal

import pytest

from loyalty_engine import Channel, Function, PluginError, RewardType, ScoringModel, hookimpl
from loyalty_engine.plugins import Plugins
from loyalty_engine.testing import NOW, FakeChannel, check_rules, engine_for, purchase, refund

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


def test_register_reward_types():
    plugin = Stamps()
    rules = 'rule "Card" on purchase { reward stamp_card(stamps: floor(net_amount / 10)) }'
    assert check_rules(rules, [plugin]).ok
    assert "unknown reward type 'stamp_card'" in check_rules(rules).errors[0].message
    engine = engine_for(rules, [plugin])
    engine.process(purchase("t-1", "m-1", *BASKET))
    assert engine.member("m-1").rewards == {"stamp_card": {"stamps": Decimal(10)}}
    assert engine.program.checked.schema.reward_types["stamp_card"].provider == "Stamps"


def test_register_reward_types_reverse_notes_reach_the_refund_result():
    plugin = Stamps()
    engine = engine_for('rule "Card" on purchase { reward stamp_card(stamps: 10) }', [plugin])
    engine.process(purchase("t-1", "m-1", *BASKET))
    result = engine.process(refund("r-1", "t-1", "m-1", ("CAKE", 1)))  # 36 of 100 back
    assert plugin.reversed == [(Decimal(10), Decimal(-3), "r-1")]
    assert result.notes[0] == "stamps: 3 taken back for 'Card'"
    assert engine.member("m-1").rewards["stamp_card"]["stamps"] == 7


def test_register_channels():
    sender = FakeChannel()

    class Pager:
        @hookimpl
        def register_channels(self, register):
            register(Channel("pager", "a pager", address="phone", factory=lambda config: sender))

    engine = engine_for('rule "Hi" on purchase { send pager "hello {member.name}" }', [Pager()])
    engine.upsert_member({"id": "m-1", "name": "Li", "phone": "+86 1"})
    engine.process(purchase("t-1", "m-1", *BASKET))
    senders, missing = engine.senders({}, only=["pager"])
    assert missing == {} and senders == {"pager": sender}
    assert engine.deliver(senders, now=NOW).sent == 1
    assert sender.bodies == ["hello Li"] and sender.sent[0].address == "+86 1"


def test_register_scoring_models():
    seen = []

    class Loyalty:
        @hookimpl
        def register_scoring_models(self, register):
            def score(facts):
                seen.append(facts)
                return Decimal(facts["lifetime_purchases"])

            register(ScoringModel("visits_so_far", "number", score=score, reads=("lifetime_purchases",)))

    rules = 'rule "Regular" on purchase when score("visits_so_far") >= 1 { award 5 points }'
    engine = engine_for(rules, [Loyalty()])
    assert engine.process(purchase("t-1", "m-1", *BASKET)).points == 0
    assert engine.process(purchase("t-2", "m-1", *BASKET)).points == 5
    assert seen[0]["today"] == NOW.date() and seen[1]["lifetime_purchases"] == 1


def test_register_functions():
    class Rounding:
        @hookimpl
        def register_functions(self, register):
            register(Function("tens", (frozenset({"money"}),), "number", lambda amount: Decimal(int(amount // 10))))

    rules = 'rule "Tens" on purchase { award tens(net_amount) points }'
    assert check_rules(rules, [Rounding()]).ok
    assert "tens" in check_rules('rule "T" on purchase { award tens("x") points }', [Rounding()]).errors[0].message
    assert engine_for(rules, [Rounding()]).process(purchase("t-1", "m-1", *BASKET)).points == 10


def test_register_event_types():
    class Reviews:
        @hookimpl
        def register_event_types(self, register):
            register("review", {"stars": "number", "text": "text"})

    rules = 'rule "Thanks" on review when stars >= 4 { award 20 points }'
    assert check_rules(rules, [Reviews()]).ok
    engine = engine_for(rules, [Reviews()])
    event = {"id": "v-1", "type": "review", "member": "m-1", "at": NOW.isoformat(), "stars": 5, "text": "好"}
    assert engine.process(event).points == 20


def test_before_evaluate():
    calls = []

    class Screen:
        @hookimpl
        def before_evaluate(self, event, member, engine):
            calls.append((event.id, member.id))
            if event.store == "BANNED":
                raise ValueError("store is blocked")

    engine = engine_for('rule "Base" on purchase { award 1 point per 1 CNY of net_amount }', [Screen()])
    assert engine.process(purchase("t-1", "m-1", *BASKET)).points == 100
    with pytest.raises(PluginError, match="plugin 'Screen' refused event 't-2'.*store is blocked"):
        engine.process(purchase("t-2", "m-1", *BASKET, store="BANNED"))
    assert engine.member("m-1").balances["points"].total == 100  # rolled back whole
    assert engine.process(purchase("t-2", "m-1", *BASKET)).points == 100  # the id is free for a retry
    engine.process(purchase("t-2", "m-1", *BASKET))  # a replay of an applied event: not called again
    assert calls == [("t-1", "m-1"), ("t-2", "m-1"), ("t-2", "m-1")]


def test_after_commit():
    published = []

    class Publish:
        @hookimpl
        def after_commit(self, event, result, engine):
            if event.id == "t-2":
                raise ConnectionError("queue is down")
            published.append((event.id, result.points))

    engine = engine_for('rule "Base" on purchase { award 1 point per 1 CNY of net_amount }', [Publish()])
    engine.process(purchase("t-1", "m-1", *BASKET))
    assert engine.process(purchase("t-2", "m-1", *BASKET)).points == 100  # applied all the same
    engine.process(purchase("t-1", "m-1", *BASKET))  # a replay: not published twice
    assert published == [("t-1", 100)]
    assert engine.plugin_errors == ["plugin 'Publish' failed in after_commit for 't-2': ConnectionError: queue is down"]
    assert engine.member("m-1").balances["points"].total == 200


def test_trace_plugins_prints_registration_and_event_hooks(monkeypatch, capsys):
    from loyalty_engine.plugins import TRACE_ENV, Plugins

    class Audit:
        @hookimpl
        def before_evaluate(self, event, member, engine):
            pass

    monkeypatch.setenv(TRACE_ENV, "1")
    manager = Plugins([Stamps(), Audit()], entry_points=False)
    engine = engine_for('rule "Card" on purchase { reward stamp_card(stamps: 1) }', [Stamps(), Audit()])
    engine.process(purchase("t-1", "m-1", *BASKET))
    lines = capsys.readouterr().err.splitlines()
    assert "loyalty-plugins: register_reward_types -> Stamps" in lines
    assert "loyalty-plugins: before_evaluate -> Audit event t-1" in lines
    monkeypatch.delenv(TRACE_ENV)
    assert not Plugins([Stamps()], entry_points=False).tracing and manager.tracing


def test_register_reward_types_describe_is_the_explanation():
    class Miles:
        @hookimpl
        def register_reward_types(self, register):
            def describe(args):
                if args["miles"] > 1000:
                    raise ValueError("too many")
                return f"{args['miles']} miles with {args['airline']}"

            register(RewardType("miles", {"airline": "text", "miles": "number"}, apply=lambda ctx: None,
                                describe=describe))  # fmt: skip

    rules = 'rule "Fly" on purchase { reward miles(airline: "CA", miles: floor(net_amount)) }'
    engine = engine_for(rules, [Miles()])
    assert engine.preview(purchase("t-1", "m-1", *BASKET)).explanations == ["100 miles with CA (miles, plugin Miles)"]
    outcome = engine.preview(purchase("t-2", "m-1", ("TV", "tech", 1, "5000.00")))
    assert outcome.explanations == ["miles reward (airline: CA, miles: 5,000; describe failed: too many)"]
    plain = engine_for('rule "Card" on purchase { reward stamp_card(stamps: 2) }', [Stamps()])
    assert plain.preview(purchase("t-1", "m-1", *BASKET)).explanations == ["stamp_card reward (stamps: 2)"]


# ------------------------------------------------------------------ loading


class Copycat:
    @hookimpl
    def register_reward_types(self, register):
        register(RewardType("stamp_card", {"stamps": "number"}, apply=lambda ctx: None))


def test_duplicate_names_end_any_command_with_the_error_not_a_traceback(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from loyalty_engine import cli, cli_plugins, plugins

    def clashing():
        return plugins.Plugins([Stamps(), Copycat()], entry_points=False)

    monkeypatch.setattr(plugins, "get_plugins", clashing)
    monkeypatch.setattr(cli_plugins, "get_plugins", clashing)
    rules = tmp_path / "rules.loy"
    rules.write_text('program "P" { currency CNY  timezone "Asia/Shanghai" }\nrule "A" on purchase { award 1 point }\n')
    for args in (["check", str(rules)], ["plugins"]):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 1, result.output
        assert "reward type 'stamp_card' is registered by both 'Stamps' and 'Copycat'" in result.output
        assert "Traceback" not in result.output and not isinstance(result.exception, PluginError)


def test_a_plugin_passed_in_code_and_installed_loads_once_without_a_failure():
    stamps = Stamps()
    loaded = Plugins([stamps, stamps], entry_points=False)  # as Engine.open(plugins=[m]) with m installed too
    assert loaded.failures == []
    assert [p.name for p in loaded.list()].count("Stamps") == 1
    assert "stamp_card" in loaded.registry.reward_types


def test_register_reward_types_reverse_raising_rolls_the_refund_back():
    class Fragile:
        @hookimpl
        def register_reward_types(self, register):
            def reverse(ctx, entry, amount):
                raise ConnectionError("partner is down")

            register(RewardType("fragile", {"n": "number"}, apply=lambda ctx: 10, reverse=reverse, unit="n"))

    rules = 'rule "Base" on purchase { award 1 point per 1 CNY of net_amount }\nrule "F" on purchase { reward fragile(n: 1) }'
    engine = engine_for(rules, [Fragile()])
    engine.process(purchase("t-1", "m-1", *BASKET))
    with pytest.raises(PluginError, match="'fragile' of plugin 'Fragile' failed to reverse rule 'F'") as failure:
        engine.process(refund("r-1", "t-1", "m-1", ("CAKE", 1)))
    assert (failure.value.plugin, failure.value.rule) == ("Fragile", "F")
    member = engine.member("m-1")
    assert member.balances["points"].total == 100 and member.rewards["fragile"]["n"] == 10  # nothing taken back
    assert engine.store.get_event("r-1") is None  # the refund's id is free


def test_register_reward_types_reverse_reads_its_own_balance():
    seen = []

    class Wallet:
        @hookimpl
        def register_reward_types(self, register):
            def reverse(ctx, entry, amount):
                seen.append((ctx.reward_type.name, ctx.balance()))

            register(RewardType("wallet", {"n": "number"}, apply=lambda ctx: 10, reverse=reverse, unit="n"))

    engine = engine_for('rule "W" on purchase { reward wallet(n: 1) }', [Wallet()])
    engine.process(purchase("t-1", "m-1", *BASKET))
    engine.process(refund("r-1", "t-1", "m-1", ("CAKE", 1)))  # 36 of 100 back: 3 of the 10
    assert seen == [("wallet", Decimal(7))]  # the reversal is journalled before reverse is called
