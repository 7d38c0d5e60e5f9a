"""The logistic churn model: its arithmetic, its configuration, and its use from rule files."""

import datetime as dt
import math
from decimal import Decimal

import loyalty_churn_logit
import pytest
from loyalty_churn_logit import LogitModel

from loyalty_engine.plugins import Plugins
from loyalty_engine.testing import NOW, check_rules, purchase

FACTS = {"days_since_last": 40, "purchases_12m": 6, "spend_12m": Decimal("1200"), "days_since_joined": 400}


def test_probability_is_the_logistic_of_the_linear_score():
    model = LogitModel(-2.0, {"days_since_last": 0.035, "purchases_12m": -0.12, "log_spend_12m": -0.25})
    z = -2.0 + 0.035 * 40 - 0.12 * 6 - 0.25 * math.log1p(1200)
    assert model.score(FACTS) == Decimal(repr(1 / (1 + math.exp(-z)))).quantize(Decimal("0.001"))
    assert model.score_many([FACTS, FACTS]) == [model.score(FACTS)] * 2
    assert model.reads == ("days_since_last", "purchases_12m", "spend_12m")


def test_lapsed_members_score_higher_and_missing_values_use_the_model_file():
    model = LogitModel.load(loyalty_churn_logit.DEFAULT_MODEL)
    recent = model.score({**FACTS, "days_since_last": 5})
    lapsed = model.score({**FACTS, "days_since_last": 120})
    never = model.score({**FACTS, "days_since_last": None})
    assert Decimal(0) < recent < lapsed < never <= Decimal(1)


def test_a_missing_feature_without_a_default_is_an_error():
    model = LogitModel(0, {"days_since_last": 1})
    with pytest.raises(ValueError, match="days_since_last"):
        model.score({**FACTS, "days_since_last": None})


def test_a_bad_model_file_fails_the_plugin_by_name(tmp_path, monkeypatch):
    bad = tmp_path / "model.toml"
    bad.write_text("[coefficients]\ndays_since_last = 0.1\n")
    monkeypatch.setenv(loyalty_churn_logit.MODEL_ENV, str(bad))
    loaded = Plugins([loyalty_churn_logit], entry_points=False)
    assert [(f.name, "intercept" in f.error) for f in loaded.failures] == [("loyalty_churn_logit", True)]
    assert "churn_probability" not in loaded.registry.scoring_models


RULES = """
coupon COMEBACK "Come back" { discount 20% valid 14 days }
rule "Win back at the till" on purchase when score("churn_probability") >= 0.5 { issue coupon COMEBACK }
"""


def test_rules_use_the_score(make_engine):
    assert check_rules(RULES, [loyalty_churn_logit]).ok
    assert "churn_probability" in check_rules(RULES).errors[0].message
    engine = make_engine(RULES, [loyalty_churn_logit])
    first = engine.process(purchase("t-1", "m-1", ("LATTE", "coffee", 1, "30.00")))  # never bought before: likely
    assert len(first.coupons) == 1
    again = engine.process(purchase("t-2", "m-1", ("LATTE", "coffee", 1, "30.00"), at=NOW + dt.timedelta(days=1)))
    assert again.coupons == ()  # bought yesterday: unlikely to churn
