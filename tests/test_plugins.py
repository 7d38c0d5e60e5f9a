"""The plugin framework: discovery, registration through every hook, and failure isolation.

Throwaway plugins are passed in code (``engine_for(rules, [plugin])``), so a test
sees exactly the plugins it names; discovery tests build a real distribution
(a ``*.dist-info`` folder on sys.path) that importlib.metadata finds like any
installed package.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_engine import Function, PluginError, RewardType, ScoringModel, hookimpl
from loyalty_engine.known_plugins import missing_plugin
from loyalty_engine.language import types as T
from loyalty_engine.plugins import LOAD_ENV, Plugins
from loyalty_engine.testing import NOW, FakeChannel, channel_plugin, check_rules, engine_for, purchase, refund

ROOT = Path(__file__).resolve().parent.parent
BASKET = (("LATTE", "coffee", 2, "32.00"), ("CAKE", "food", 1, "28.00"))
SHIPPED = ("loyalty-cashback", "loyalty-sms-gateway", "loyalty-churn-logit")


def rows(engine, table: str) -> int:
    return engine.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def make_dist(folder: Path, name: str, module: str, code: str) -> None:
    """A distribution with one ``loyalty_engine`` entry point, discoverable through sys.path."""
    info = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[loyalty_engine]\n{module} = {module}\n")
    (folder / f"{module}.py").write_text(textwrap.dedent(code))


def run_cli(*args, env_extra=None, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != LOAD_ENV}
    env.update(env_extra or {})
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "loyalty_engine", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


# ------------------------------------------------------------------ discovery and listing


def test_builtins_are_plugins_registered_through_the_same_hooks():
    loaded = Plugins(entry_points=False)
    reg = loaded.registry
    assert {"points", "coupon", "tier", "message"} <= set(reg.reward_types)
    assert {"console", "email", "webhook", "sms", "push"} <= set(reg.channels)
    assert {"rfm_score", "rfm_segment", "churn_risk", "clv"} <= set(reg.scoring_models)
    assert {"purchase", "refund", "signup", "visit"} <= set(reg.event_types)
    assert all(p.startswith("loyalty_engine.default_plugins.") for p in reg.provided_by.values())
    assert all(info.source == "built-in" for info in loaded.list())


def test_loyalty_plugins_lists_builtins_and_the_shipped_plugins():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["loyalty_engine.default_plugins.scoring"]["source"] == "built-in"
    for dist in SHIPPED:
        assert dist in by_name, f"{dist} is not installed: pip install -e '.[plugins]'"
        assert by_name[dist]["source"].startswith("entry point")
    assert by_name["loyalty-cashback"]["provides"] == {"reward type": ["cashback"]}
    assert by_name["loyalty-sms-gateway"]["provides"] == {"channel": ["sms_gateway"]}
    assert by_name["loyalty-churn-logit"]["provides"] == {"scoring model": ["churn_probability"]}
    table = run_cli("plugins")
    assert "loyalty-cashback" in table.stdout and "reward types: cashback" in table.stdout


def test_a_broken_entry_point_is_reported_and_the_rest_still_load(tmp_path, monkeypatch):
    make_dist(tmp_path, "broken-plugin", "broken_plugin_mod", "raise ImportError('needs libfoo')\n")
    make_dist(
        tmp_path,
        "good-plugin",
        "good_plugin_mod",
        """
        from loyalty_engine import Channel, hookimpl

        @hookimpl
        def register_channels(register):
            register(Channel("pigeon", "by bird"))
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = Plugins()
    assert [(f.name, f.error) for f in loaded.failures if f.name == "broken-plugin"] == [
        ("broken-plugin", "ImportError: needs libfoo")
    ]
    assert loaded.registry.provided_by[("channel", "pigeon")] == "good-plugin"
    result = run_cli("plugins", pythonpath=tmp_path)
    assert result.returncode == 1
    assert "broken-plugin" in result.stdout and "needs libfoo" in result.stdout and "pigeon" in result.stdout


def test_a_misspelled_hook_is_reported_by_name():
    class Typo:
        @hookimpl
        def register_reward_type(self, register):  # missing the s
            pass

    loaded = Plugins([Typo()], entry_points=False)
    assert [f.error for f in loaded.failures] == [
        "implements hooks that do not exist: register_reward_type (did you mean 'register_reward_types'?)"
    ]


def test_a_name_from_a_plugin_that_failed_to_load_says_so_in_the_hint():
    from loyalty_engine.program import check_program

    class Typo:
        @hookimpl
        def register_chanels(self, register):
            pass

    text = 'program "T" { currency CNY timezone "Asia/Shanghai" }\nrule "A" on purchase { send wecom "hi" }\n'
    plugins = Plugins([Typo()], entry_points=False)
    hint = check_program("t.loy", text=text, schema=plugins.schema()).errors[0].hint
    assert "a plugin failed to load, see 'loyalty plugins': 'Typo' (implements hooks that do not exist" in hint
    assert "register_chanels (did you mean 'register_channels'?)" in hint


def test_duplicate_names_fail_loudly_naming_both_plugins():
    def gift_plugin(label):
        class Gift:
            @hookimpl
            def register_reward_types(self, register):
                register(RewardType("gift", {"value": T.MONEY}, apply=lambda ctx: None))

        Gift.__name__ = label
        return Gift()

    with pytest.raises(PluginError, match="reward type 'gift' is registered by both 'first' and 'second'"):
        Plugins([gift_plugin("first"), gift_plugin("second")], entry_points=False)


def test_load_plugins_env_limits_which_installed_plugins_load(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "")
    assert all(info.source == "built-in" for info in Plugins().list())
    monkeypatch.setenv(LOAD_ENV, "loyalty-cashback")
    installed = [info.name for info in Plugins().list() if info.source != "built-in"]
    assert installed == ["loyalty-cashback"]


# ------------------------------------------------------------------ registration hooks, used from rule files


class Miles:
    """A reward type journalling partner miles; ``fail`` makes apply raise (a partner outage)."""

    fail = False
    reversed: list = []

    @hookimpl
    def register_reward_types(self, register):
        def apply(ctx):
            if Miles.fail:
                raise ConnectionError("partner API down")
            return Decimal(ctx.args["miles"])

        def reverse(ctx, entry, amount):
            Miles.reversed.append((entry.id, amount))

        register(
            RewardType(
                "miles", {"miles": T.NUMBER, "airline": T.TEXT}, frozenset({"miles"}), apply=apply, reverse=reverse,
                unit="miles",
            )
        )  # fmt: skip


MILES_RULES = """
coupon THANKS "Thank you" { discount 5% valid 30 days }
rule "Base" on purchase { award 1 point per 1 CNY of net_amount }
rule "Fly" on purchase {
  reward miles(miles: floor(number(net_amount) / 10), airline: "CA")
  issue coupon THANKS
}
"""


@pytest.fixture
def miles():
    Miles.fail = False
    Miles.reversed = []
    return Miles()


def test_register_reward_types_applies_journals_and_reverses(miles):
    engine = engine_for(MILES_RULES, [miles])
    result = engine.process(purchase("t-1", "m-1", *BASKET))
    assert result.points == 92
    assert engine.member("m-1").rewards == {"miles": {"miles": Decimal(9)}}
    assert [e.to_dict()["explanation"] for e in engine.preview(purchase("t-2", "m-1", *BASKET)).effects][1] == (
        "miles reward (miles: 9, airline: CA)"
    )
    engine.process(refund("r-1", "t-1", "m-1"))  # everything back
    assert engine.member("m-1").rewards == {"miles": {"miles": Decimal(0)}}
    assert [amount for _, amount in Miles.reversed] == [Decimal(-9)]


def test_register_reward_types_arguments_are_type_checked(miles):
    result = check_rules('rule "X" on purchase { reward miles(miles: "many", seat: 1) }', [miles])
    messages = [(d.line, d.column, d.message) for d in result.errors]
    assert (5, 44, "'miles' must be a number, but this is a text") in messages
    assert (5, 52, "reward 'miles' has no argument 'seat'") in messages
    assert check_rules('rule "X" on purchase { reward points(amount: 1) }').errors[0].message == (
        "'points' is a built-in effect: write it as 'award ...'"
    )


def test_a_failing_reward_type_rolls_the_whole_event_back_and_leaves_the_id_free(miles):
    engine = engine_for(MILES_RULES, [miles])
    Miles.fail = True
    before = {t: rows(engine, t) for t in ("ledger", "coupons", "reward_journal", "events", "members")}
    with pytest.raises(PluginError) as caught:
        engine.process(purchase("t-1", "m-1", *BASKET))
    error = caught.value
    assert (error.plugin, error.rule) == ("Miles", "Fly")
    assert error.location == "rules.loy:9:3" and "ConnectionError: partner API down" in str(error)
    assert {t: rows(engine, t) for t in before} == before  # nothing half-written
    Miles.fail = False  # the partner is back: the same id goes through now
    assert engine.process(purchase("t-1", "m-1", *BASKET)).points == 92
    assert rows(engine, "reward_journal") == 1 and rows(engine, "coupons") == 1


class Boom:
    """A scoring model that always raises, and one that counts its batch calls."""

    batches = 0

    @hookimpl
    def register_scoring_models(self, register):
        def boom(facts):
            raise ZeroDivisionError("model file corrupt")

        def spend_many(facts_list):
            Boom.batches += 1
            return [f["spend_12m"] for f in facts_list]

        register(ScoringModel("boom", T.NUMBER, score=boom))
        register(ScoringModel("spend", T.MONEY, score=lambda f: f["spend_12m"], score_many=spend_many))


def test_register_scoring_models_a_failing_model_fails_only_the_rules_reading_it():
    rules = """
rule "Base" on purchase { award 1 point per 1 CNY of net_amount }
rule "Risky bonus" on purchase when score("boom") > 0.5 { award 100 points }
"""
    engine = engine_for(rules, [Boom()])
    result = engine.process(purchase("t-1", "m-1", *BASKET))
    assert result.points == 92  # the base rule applied, the bonus did not
    (note,) = [n for n in result.notes if "boom" in n]
    assert "score 'boom' (plugin 'Boom') failed for member 'm-1': ZeroDivisionError: model file corrupt" in note
    assert "'Risky bonus'" in note


def test_register_scoring_models_batch_scoring_and_isolation_in_the_daily_run():
    rules = """
trigger "Risky" daily when score("boom") > 0.5 { send console "risky" }
trigger "Spenders" daily when score("spend") >= 50 { send console "thanks {member.id}" }
"""
    engine = engine_for(rules, [Boom()])
    for i in range(3):
        engine.process(purchase(f"t-{i}", f"m-{i}", *BASKET))
    Boom.batches = 0
    report = engine.run_triggers(dt.date(2026, 5, 5))
    assert report.fired == {"Spenders": 3}  # the batch went on for every member
    assert report.error_count == 3 and "score 'boom'" in report.errors[0]
    assert Boom.batches == 1  # one score_many call for the chunk of members


def test_register_channels_senders_built_from_settings_and_failures_retried():
    fake = FakeChannel()
    rules = 'rule "Hi" on purchase { send pager "hi {member.id}" send console "logged" }\n'
    engine = engine_for(rules, [channel_plugin("pager", fake)])
    engine.process(purchase("t-1", "m-1", *BASKET))
    senders, missing = engine.senders({}, only=["pager", "console"])
    assert missing == {} and senders["pager"] is fake
    console = FakeChannel()
    fake.fail_next(1, TimeoutError("timed out"))
    report = engine.deliver({"pager": fake, "console": console}, now=NOW)
    assert (report.sent, report.retried) == (1, 1)  # the console message went; the pager one waits
    assert console.bodies == ["logged"] and "TimeoutError: timed out" in report.errors[0]
    later = engine.deliver({"pager": fake, "console": console}, now=NOW + dt.timedelta(hours=1))
    assert later.sent == 1 and fake.bodies == ["hi m-1"]
    assert [m.dedupe_key for m in fake.sent] == ["t-1:1"]


def test_register_channels_configuration_problems_are_named():
    engine = engine_for('rule "Hi" on purchase { send email "hi" send sms "hi" }\n')
    senders, missing = engine.senders({"email": {"port": 25}})
    assert missing["email"] == "[channels.email] needs host"
    assert "needs a transport" in missing["sms"] and "console" in senders
    dry, none_missing = engine.senders({}, console_fallback=True)
    assert none_missing == {} and {"email", "sms"} <= set(dry)


def test_register_functions_checked_and_called():
    class Double:
        @hookimpl
        def register_functions(self, register):
            register(Function("double", (frozenset({T.NUMBER, T.MONEY}),), T.NUMBER, lambda v: v * 2, "twice"))

    rules = 'rule "Twice" on purchase { award (double(number(floor(net_amount)))) points }\n'
    engine = engine_for(rules, [Double()])
    assert engine.process(purchase("t-1", "m-1", *BASKET)).points == 184
    bad = check_rules('rule "T" on purchase { award (double("x")) points }\n', [Double()]).errors[0]
    assert (bad.line, bad.message) == (5, "'double' needs a money or number here, but this is a text")


def test_register_event_types_custom_events_in_rules():
    class Reviews:
        @hookimpl
        def register_event_types(self, register):
            register("review", {"stars": T.NUMBER, "text": T.TEXT})

    rules = 'rule "Review" on review when stars >= 4 { award 20 points }\n'
    engine = engine_for(rules, [Reviews()])
    event = {"id": "v-1", "type": "review", "member": "m-1", "at": NOW.isoformat(), "stars": 5, "text": "好喝"}
    assert engine.process(event).points == 20
    assert engine.process({**event, "id": "v-2", "stars": 2}).points == 0
    assert "review" not in Plugins(entry_points=False).registry.event_types


def test_before_evaluate_can_refuse_an_event_which_then_writes_nothing():
    seen = []

    class Screen:
        @hookimpl
        def before_evaluate(self, event, member, engine):
            seen.append((event.id, member.id))
            if member.id == "m-blocked":
                raise PermissionError("member is blocked")

    engine = engine_for('rule "B" on purchase { award 1 point per 1 CNY of net_amount }\n', [Screen()])
    assert engine.process(purchase("t-1", "m-1", *BASKET)).points == 92
    with pytest.raises(PluginError, match="plugin 'Screen' refused event 't-2' in before_evaluate: PermissionError"):
        engine.process(purchase("t-2", "m-blocked", *BASKET))
    assert engine.store.get_event("t-2") is None and engine.store.load_member("m-blocked") is None
    engine.process(purchase("t-1", "m-1", *BASKET))  # a replay runs no hooks
    assert seen == [("t-1", "m-1"), ("t-2", "m-blocked")]


def test_after_commit_errors_are_collected_and_the_other_plugins_still_run():
    published = []

    class Broken:
        @hookimpl
        def after_commit(self, event, result, engine):
            raise RuntimeError("queue unreachable")

    class Publisher:
        @hookimpl
        def after_commit(self, event, result, engine):
            published.append((event.id, result.points))

    engine = engine_for('rule "B" on purchase { award 1 point per 1 CNY of net_amount }\n', [Broken(), Publisher()])
    result = engine.process(purchase("t-1", "m-1", *BASKET))
    assert result.status == "applied" and engine.member("m-1").balances["points"].total == 92
    assert published == [("t-1", 92)]
    assert engine.plugin_errors == ["plugin 'Broken' failed in after_commit for 't-1': RuntimeError: queue unreachable"]
    engine.process(purchase("t-1", "m-1", *BASKET))  # a duplicate is not published again
    assert published == [("t-1", 92)]


# ------------------------------------------------------------------ a rule file that needs the shipped plugins

EXAMPLE = ROOT / "dsl" / "examples" / "bubble_tea_plugins.loy"
EVENTS = ROOT / "dsl" / "examples" / "events"


def test_the_plugin_example_checks_and_evaluates_with_the_three_plugins(tmp_path):
    from loyalty_engine.service.engine import Engine

    engine = Engine.open(EXAMPLE, tmp_path / "t.db", clock=lambda: NOW)
    engine.upsert_member(json.loads((EVENTS / "bubble_tea_plugins.member.json").read_text()))
    event = json.loads((EVENTS / "bubble_tea_plugins.purchase.json").read_text())
    result = engine.process(event)
    assert result.points == 60
    assert len(result.coupons) == 1  # a first purchase: the churn model rates the member likely to lapse
    assert engine.member("m-2001").rewards["cashback"] == {"CNY": Decimal("1.32")}  # 3% of 44.00 of tea
    engine.process({"id": "r-1", "type": "refund", "original": event["id"], "member": "m-2001",
                    "at": event["at"], "items": [{"sku": "BROWN_SUGAR_PEARL_L", "quantity": 1}]})  # fmt: skip
    assert engine.member("m-2001").rewards["cashback"] == {"CNY": Decimal("0.66")}


def test_without_a_plugin_check_names_it_at_the_line_that_uses_it():
    result = run_cli("check", str(EXAMPLE), env_extra={LOAD_ENV: "loyalty-sms-gateway,loyalty-churn-logit"})
    assert result.returncode == 1
    assert "bubble_tea_plugins.loy:33:3: error" not in result.stderr  # the column is the reward's name
    assert "bubble_tea_plugins.loy:33:10: error: reward type 'cashback' comes from the plugin 'loyalty-cashback'" in (
        result.stderr
    )
    assert run_cli("check", str(EXAMPLE)).returncode == 0


def test_an_uninstalled_plugin_is_named_with_the_command_to_install_it(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    message, hint = missing_plugin("channel", "sms_gateway", Plugins(entry_points=False))
    assert message == "channel 'sms_gateway' comes from the plugin 'loyalty-sms-gateway', which is not installed"
    assert hint.startswith("install it: pip install loyalty-sms-gateway")
    assert missing_plugin("channel", "carrier_pigeon", None) is None
