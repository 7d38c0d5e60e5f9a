"""What processing an event or an operation returns (and stores, so a retry gets the same answer)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from attrs import field, frozen

from ..engine.effects import json_number


def _entry_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ledger line with its amount as canonical text, so a stored (JSON) result equals the first one."""
    amount = row["amount"]
    return dict(row, amount=str(json_number(amount if type(amount) is Decimal else Decimal(str(amount)))))


def _json_amount(text: str):
    """``json_number(Decimal(text))`` for a canonical amount text: an int when whole, else the text itself."""
    return int(text) if text.lstrip("-").isdigit() else text


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)  # built once, not per call


@frozen
class Result:
    """The applied result of one event or operation.

    ``totals`` is the change per balance, ``entries`` the ledger lines written
    (balance, kind, amount, rule), ``coupons`` the codes issued. ``duplicate``
    is True when the id had been processed before and nothing changed.
    ``outcome`` is the rule evaluation (with explanations) on first processing.
    """

    id: str
    kind: str
    member: str | None
    status: str = "applied"  # applied | parked | refused (a parked refund its purchase could not take)
    totals: dict[str, Decimal] = field(factory=dict)
    coupons: tuple[str, ...] = ()
    tier: str | None = None
    messages: int = 0
    entries: tuple[dict[str, Any], ...] = field(default=(), converter=lambda rows: tuple(map(_entry_row, rows)))
    notes: tuple[str, ...] = ()
    value: dict[str, Any] = field(factory=dict)  # operation details, e.g. a coupon's discount
    duplicate: bool = False
    outcome: Any = field(default=None, eq=False, repr=False)

    @property
    def points(self) -> int:
        return int(self.totals.get("points", 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "member": self.member,
            "status": self.status,
            "totals": {k: json_number(v) for k, v in self.totals.items()},
            "coupons": list(self.coupons),
            "tier": self.tier,
            "messages": self.messages,
            "entries": [dict(e, amount=_json_amount(e["amount"])) for e in self.entries],
            "notes": list(self.notes),
            "value": self.value,
            "duplicate": self.duplicate,
        }

    def to_json(self) -> str:
        return _JSON.encode(self.to_dict())

    @classmethod
    def from_json(cls, text: str, duplicate: bool = True) -> Result:
        data = json.loads(text)
        return cls(
            data["id"],
            data["kind"],
            data["member"],
            data["status"],
            {k: Decimal(str(v)) for k, v in data["totals"].items()},
            tuple(data["coupons"]),
            data["tier"],
            data["messages"],
            tuple(data["entries"]),
            tuple(data["notes"]),
            data.get("value", {}),
            duplicate,
        )
