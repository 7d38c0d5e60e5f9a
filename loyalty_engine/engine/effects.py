"""Effects: what evaluating an event decides, each with its rule, source span and explanation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from attrs import field, frozen


@frozen
class Effect:
    """One decision. ``type`` is award, multiplier, cap, coupon, message, tier or reward."""

    type: str
    rule: str | None
    explanation: str
    location: str | None = None  # "path:line:col" of the rule's action
    balance: str | None = None
    points: Decimal | None = None  # signed change to ``balance``
    factor: Decimal | None = None
    coupon: str | None = None
    channel: str | None = None
    text: str | None = None
    subject: str | None = None
    tier: str | None = None
    reward: str | None = None
    args: dict[str, Any] = field(factory=dict)
    base: Decimal | None = None  # the amount the award was computed on
    node: Any = field(default=None, eq=False, repr=False)  # the rule-file action behind the effect

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "rule": self.rule}
        for name in (
            "balance",
            "points",
            "factor",
            "coupon",
            "channel",
            "text",
            "subject",
            "tier",
            "reward",
            "base",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = json_number(value) if isinstance(value, Decimal) else value
        if self.args:
            out["args"] = {k: json_number(v) if isinstance(v, Decimal) else _jsonable(v) for k, v in self.args.items()}
        out["location"] = self.location
        out["explanation"] = self.explanation
        return out


def json_number(value: Decimal):
    """A Decimal for JSON: an int when whole, else its exact text."""
    if value == value.to_integral_value():
        return int(value)
    return str(value)


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
