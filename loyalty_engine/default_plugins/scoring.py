"""The built-in scoring models: RFM, recency-based churn risk and customer lifetime value.

Deliberately simple and documented (docs/store.md, "Scores"); each reads the
member facts of :mod:`loyalty_engine.service.scoring`:

- ``churn_risk``: recency against the member's own buying rhythm,
  ``1 - exp(-days_since_last / (1.5 * typical_gap))``, where the typical gap
  is 365 / purchases in the last 12 months (60 days when there are none);
  0.50 for a member who never bought.
- ``rfm_score`` / ``rfm_segment``: recency, frequency and monetary grades of
  1 to 5 on fixed cut points (days 30/60/120/240; purchases 2/5/10/20 and spend
  in the program currency 500/1000/2500/5000 over 12 months), summed to 3-15 and
  named with the usual segments.
- ``clv``: spend over the last 12 months x expected years (3) x (1 - churn risk).
"""

import math
from decimal import Decimal

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language import types as T
from loyalty_engine.language.schema import ScoringModel

TWO = Decimal("0.01")
READS = ("days_since_last", "purchases_12m", "spend_12m")


def churn_risk(facts) -> Decimal:
    days = facts["days_since_last"]
    if days is None:
        return Decimal("0.50")
    gap = 365 / facts["purchases_12m"] if facts["purchases_12m"] else 60
    return Decimal(str(1 - math.exp(-max(days, 0) / (1.5 * gap)))).quantize(TWO)


def _grade(value, cuts) -> int:
    """1 below the first cut, 2 from it, ... 5 from the fourth."""
    return 1 + sum(1 for cut in cuts if value >= cut)


def rfm_grades(facts) -> tuple[int, int, int]:
    days = facts["days_since_last"]
    recency = 1 if days is None else _grade(-days, (-240, -120, -60, -30))
    frequency = _grade(facts["purchases_12m"], (2, 5, 10, 20))
    monetary = _grade(facts["spend_12m"], (500, 1000, 2500, 5000))
    return recency, frequency, monetary


def rfm_score(facts) -> Decimal:
    return Decimal(sum(rfm_grades(facts)))


def rfm_segment(facts) -> str:
    r, f, m = rfm_grades(facts)
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r >= 3 and f >= 3:
        return "loyal"
    if r >= 4 and f <= 2:
        return "new" if f == 1 else "promising"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r <= 2 and f <= 2:
        return "lost" if r == 1 else "hibernating"
    return "need_attention"


def clv(facts) -> Decimal:
    years = Decimal(3) * (Decimal(1) - churn_risk(facts))
    return (facts["spend_12m"] * years).quantize(TWO)


@hookimpl
def register_scoring_models(register):
    register(ScoringModel("rfm_score", T.NUMBER, "RFM score, 3 (worst) to 15 (best)", score=rfm_score, reads=READS))
    register(
        ScoringModel(
            "rfm_segment", T.TEXT, "RFM segment name, e.g. 'champions', 'at_risk'", score=rfm_segment, reads=READS
        )
    )
    register(ScoringModel("churn_risk", T.NUMBER, "probability of churn, 0 to 1", score=churn_risk, reads=READS))
    register(ScoringModel("clv", T.MONEY, "predicted customer lifetime value", score=clv, reads=READS))
