"""loyalty-churn-logit: ``score("churn_probability")`` from a logistic model configured in TOML.

The model file (``model.toml`` beside this module, or the file named by
``LOYALTY_CHURN_LOGIT_MODEL``) holds ``intercept``, ``[coefficients]`` per
feature and ``[missing]`` values for features a member lacks. Features are the
engine's member facts (``days_since_last``, ``purchases_12m``,
``days_since_joined`` ...) plus ``log_spend_12m`` = ln(1 + spend over 12 months).
"""

from __future__ import annotations

import math
import os
import tomllib
from decimal import Decimal
from pathlib import Path

from loyalty_engine import ScoringModel, hookimpl

MODEL_ENV = "LOYALTY_CHURN_LOGIT_MODEL"
DEFAULT_MODEL = Path(__file__).with_name("model.toml")
DERIVED = {"log_spend_12m": lambda facts: math.log1p(float(facts["spend_12m"]))}
PLACES = Decimal("0.001")


class LogitModel:
    """A logistic model over member facts: ``p = 1 / (1 + exp(-(b0 + sum(b_i * x_i))))``."""

    def __init__(self, intercept: float, coefficients: dict[str, float], missing: dict[str, float] | None = None):
        self.intercept = float(intercept)
        self.coefficients = {name: float(c) for name, c in coefficients.items()}
        self.missing = {name: float(v) for name, v in (missing or {}).items()}

    @classmethod
    def load(cls, path: str | Path) -> LogitModel:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        try:
            return cls(data["intercept"], data["coefficients"], data.get("missing"))
        except KeyError as exc:
            raise ValueError(f"{path}: the model needs '{exc.args[0]}'") from None

    def feature(self, facts, name: str) -> float:
        value = DERIVED[name](facts) if name in DERIVED else facts[name]
        if value is None:
            value = self.missing.get(name)
            if value is None:
                raise ValueError(f"feature '{name}' is missing and the model gives no [missing] value for it")
        return float(value)

    def score(self, facts) -> Decimal:
        z = self.intercept + sum(c * self.feature(facts, name) for name, c in self.coefficients.items())
        p = 1 / (1 + math.exp(-z)) if z > -700 else 0.0
        return Decimal(repr(p)).quantize(PLACES)

    def score_many(self, facts_list) -> list[Decimal]:
        return [self.score(facts) for facts in facts_list]

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(sorted({("spend_12m" if name in DERIVED else name) for name in self.coefficients}))


def load_model() -> LogitModel:
    return LogitModel.load(os.environ.get(MODEL_ENV) or DEFAULT_MODEL)


@hookimpl
def register_scoring_models(register):
    model = load_model()  # a bad model file fails here, and 'loyalty plugins' reports it by name
    register(
        ScoringModel(
            "churn_probability",
            "number",
            "probability that the member churns, 0 to 1, from a logistic model (loyalty-churn-logit)",
            score=model.score,
            score_many=model.score_many,
            reads=model.reads,
        )
    )
