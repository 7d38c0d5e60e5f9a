"""The JSON wire format: one cattrs converter, and errors that name the field.

``structure_event(data)`` turns a decoded JSON object into an :class:`Event`;
``structure_member`` and ``structure_context`` do the same for members and the
member context. Invalid input raises :class:`InputError` whose problems are
``(path, message)`` pairs such as ``("items[2].unit_price", "'abc' is not a
decimal amount")``. Nothing is half-built: either the whole object is valid or
the error lists every problem found.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.v import transform_error

from .errors import InputError
from .language import types as T
from .model import ZERO, Event, LineItem, Member, MemberContext

converter = cattrs.Converter(forbid_extra_keys=True)


def _decimal(value: Any, _type=None) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a decimal amount")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a decimal amount")
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal amount") from None
    else:
        raise ValueError(f"{value!r} is not a decimal amount")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a decimal amount")
    return result


def _datetime(value: Any, _type=None) -> dt.datetime:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, str):
        try:
            result = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time") from None
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time")
    if result.utcoffset() is None:
        raise ValueError(f"{value!r} has no timezone offset (write e.g. 2026-05-03T10:15:00+08:00)")
    return result


def _date(value: Any, _type=None) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


def _text(value: Any, _type=None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{value!r} is not a text")


def _optional_text(value: Any, _type=None):
    return None if value is None else _text(value)


converter.register_structure_hook(Decimal, _decimal)
converter.register_structure_hook(dt.datetime, _datetime)
converter.register_structure_hook(dt.date, _date)
converter.register_structure_hook(str, _text)
converter.register_unstructure_hook(Decimal, str)
converter.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
converter.register_unstructure_hook(dt.date, lambda v: v.isoformat())

_EVENT_KEYS = {
    "id",
    "type",
    "member",
    "at",
    "channel",
    "store",
    "payment",
    "currency",
    "items",
    "amount",
    "discount",
    "net_amount",
    "original",
    "referrer",
}


def _format(exc: BaseException, _type) -> str:
    if isinstance(exc, KeyError):
        return "is required"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return "unknown field(s): " + ", ".join(sorted(exc.extra_fields))
    if isinstance(exc, (ValueError, TypeError)):
        text = str(exc)
        if "missing" in text and "required" in text:
            return "is required"
        return text
    return str(exc)


def _problems(exc: Exception) -> list[tuple[str, str]]:
    out = []
    for line in transform_error(exc, path="$", format_exception=_format):
        message, _, path = line.rpartition(" @ ")
        path = path.removeprefix("$").lstrip(".")
        out.append((path, message))
    return out


def _structure(data: Any, cls, what: str):
    if not isinstance(data, dict):
        raise InputError([("", f"expected a JSON object for the {what}, got {type(data).__name__}")], what)
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        raise InputError(_problems(exc), what) from None
    except (ValueError, TypeError) as exc:
        raise InputError([("", str(exc))], what) from None


_ITEM_KEYS = frozenset({"sku", "quantity", "unit_price", "category", "name", "brand", "discount", "amount"})
_ITEM_NUMBERS = ("quantity", "unit_price", "discount", "amount")
_ITEM_TEXTS = ("category", "name", "brand")
_EVENT_TEXTS = ("channel", "store", "payment", "currency", "original", "referrer")
_EVENT_NUMBERS = ("amount", "discount", "net_amount")


_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes for a string
_NUMBERS: dict = {}  # text or int as sent -> (Decimal, canonical text): tills repeat prices and quantities
_ONE = (Decimal(1), "1")
_NIL = (Decimal(0), "0")


def _number(value) -> tuple[Decimal, str]:
    """A decimal amount and its canonical text (what :func:`canonical_json` writes for it)."""
    kind = type(value)
    if kind is str or kind is int:
        known = _NUMBERS.get(value)
        if known is None:
            number = _decimal(value)
            known = (number, _dec(number))
            if len(_NUMBERS) >= 8192:
                _NUMBERS.clear()
            _NUMBERS[value] = known
        return known
    number = _decimal(value)
    return number, _dec(number)


_new, _set = object.__new__, object.__setattr__
_LINE_FIELDS = ("sku", "quantity", "unit_price", "category", "name", "brand", "discount", "amount")
if tuple(a.name for a in attrs.fields(LineItem)) != _LINE_FIELDS:  # pragma: no cover - a guard for model changes
    raise RuntimeError("wire._line_item sets every field of LineItem: update it to the model")


def _line_item(sku, quantity, unit_price, category, name, brand, discount, amount) -> LineItem:
    """A LineItem from values the fast path has already converted and checked (attrs' __init__ would redo it)."""
    item = _new(LineItem)
    _set(item, "sku", sku)
    _set(item, "quantity", quantity)
    _set(item, "unit_price", unit_price)
    _set(item, "category", category)
    _set(item, "name", name)
    _set(item, "brand", brand)
    _set(item, "discount", discount)
    _set(item, "amount", amount)
    return item


def _fast_built(data: dict) -> tuple[Event, str] | None:
    """A well-formed event without custom fields, built without cattrs (the till's hot path), with its
    canonical JSON text (the same text :func:`canonical_json` writes for the event, built alongside).

    Returns None for anything else, and the caller takes the full path, which
    gives the same event or the path-addressed errors.
    """
    if not data.keys() <= _EVENT_KEYS:
        return None
    try:
        items = []
        lines = []
        total = ZERO
        for raw in data.get("items", ()):
            if type(raw) is not dict or not raw.keys() <= _ITEM_KEYS or type(raw.get("sku")) is not str:
                return None
            value = raw.get("quantity")
            quantity, q_text = _ONE if value is None else _number(value)
            value = raw.get("unit_price")
            price, p_text = _NIL if value is None else _number(value)
            value = raw.get("discount")
            off, d_text = _NIL if value is None else _number(value)
            if quantity < 0 or price < 0 or off < 0:
                return None
            value = raw.get("amount")
            amount = price * quantity - off if value is None else _decimal(value)
            category, name, brand = raw.get("category"), raw.get("name"), raw.get("brand")
            # the canonical text of the line, keys in sorted order, strings escaped as json.dumps does
            line = f'{{"amount":"{_dec(amount)}"'
            if brand is not None:
                brand = _text(brand)
                line += ',"brand":' + _quote(brand)
            if category is not None:
                category = _text(category)
                line += ',"category":' + _quote(category)
            line += f',"discount":"{d_text}"'
            if name is not None:
                name = _text(name)
                line += ',"name":' + _quote(name)
            line += f',"quantity":"{q_text}","sku":{_quote(raw["sku"])},"unit_price":"{p_text}"}}'
            items.append(_line_item(raw["sku"], quantity, price, category, name, brand, off, amount))
            lines.append(line)
            total += amount
        texts = [None if (v := data.get(name)) is None else _text(v) for name in _EVENT_TEXTS]
        channel, store, payment, currency, original, referrer = texts
        event_id, kind, member = _text(data["id"]), _text(data["type"]), _text(data["member"])
        at = _datetime(data["at"])
        value = data.get("amount")
        amount = total if value is None else _decimal(value)
        value = data.get("discount")
        discount = ZERO if value is None else _decimal(value)
        value = data.get("net_amount")
        net = amount - discount if value is None else _decimal(value)
        event = Event(
            event_id,
            kind,
            member,
            at,
            channel,
            store,
            payment,
            currency,
            items,
            amount,
            discount,
            net,
            original,
            referrer,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    if kind in ("purchase", "refund") and amount < 0:
        return None
    # keys in sorted order, as _canonical_event writes them and json.dumps spells them
    text = f'{{"amount":"{_dec(amount)}","at":"{at.astimezone(dt.UTC).isoformat()}"'
    if channel is not None:
        text += ',"channel":' + _quote(channel)
    if currency is not None:
        text += ',"currency":' + _quote(currency)
    text += f',"discount":"{_dec(discount)}","id":{_quote(event_id)}'
    if lines:
        text += ',"items":[' + ",".join(lines) + "]"
    text += f',"member":{_quote(member)},"net_amount":"{_dec(net)}"'
    for key, value in (("original", original), ("payment", payment), ("referrer", referrer), ("store", store)):
        if value is not None:
            text += f',"{key}":{_quote(value)}'
    return event, text + f',"type":{_quote(kind)}}}'


def _fast_event(data: dict) -> Event | None:
    built = _fast_built(data)
    return None if built is None else built[0]


def event_and_payload(data: Any, event_fields: dict[str, dict[str, str]] | None = None) -> tuple[Event, str]:
    """``structure_event(data)`` and ``canonical_json`` of it (the idempotency payload), in one pass when it can."""
    if type(data) is dict and isinstance(data.get("items", ()), list | tuple) and _fast_event is _FAST_EVENT:
        built = _fast_built(data)
        if built is not None:
            return built
    event = structure_event(data, event_fields)
    return event, canonical_json(event)


def structure_event(data: Any, event_fields: dict[str, dict[str, str]] | None = None) -> Event:
    """Validate a JSON event. ``event_fields`` (from a program) types custom fields."""
    if isinstance(data, dict) and isinstance(data.get("items", ()), list | tuple):
        event = _fast_event(data)
        if event is not None:
            return event
    if not isinstance(data, dict):
        raise InputError([("", f"expected a JSON object for the event, got {type(data).__name__}")], "event")
    if data.get("items") is not None and not isinstance(data["items"], list | tuple):
        got = type(data["items"]).__name__
        raise InputError([("items", f"must be a list of line items (JSON objects), not {got}")], "event")
    known = {k: v for k, v in data.items() if k in _EVENT_KEYS}
    extra = {k: v for k, v in data.items() if k not in _EVENT_KEYS and k != "attributes"}
    if isinstance(data.get("attributes"), dict):
        extra.update(data["attributes"])
    problems: list[tuple[str, str]] = []
    attributes: dict[str, Any] = {}
    declared = (event_fields or {}).get(str(data.get("type", "")), {})
    for key, value in extra.items():
        wanted = declared.get(key)
        try:
            attributes[key] = _typed(value, wanted)
        except ValueError as exc:
            problems.append((key, str(exc)))
    try:
        event = _structure({**known, "attributes": {}}, Event, "event")
    except InputError as exc:
        problems = exc.problems + problems
        raise InputError(problems, "event") from None
    if problems:
        raise InputError(problems, "event")
    if event.type in ("purchase", "refund") and event.amount < 0:
        raise InputError([("amount", f"must be >= 0 (got {event.amount})")], "event")
    return Event(**{**_fields_of(event), "attributes": attributes})


def _fields_of(event: Event) -> dict:
    import attrs

    return {a.name: getattr(event, a.name) for a in attrs.fields(Event)}


def _typed(value: Any, wanted: str | None):
    if value is None or wanted is None:
        if isinstance(value, float):
            return _decimal(value)
        return value
    if wanted in (T.NUMBER, T.MONEY):
        return _decimal(value)
    if wanted == T.TEXT:
        return _text(value)
    if wanted == T.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{value!r} is not true or false")
    if wanted == T.DATE:
        return _date(value)
    if wanted == T.DATETIME:
        return _datetime(value)
    element = T.element_of(wanted)
    if element is not None:
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not a list")
        return tuple(_typed(v, element) for v in value)
    return value


def aware_moment(value: Any, what: str = "operation") -> dt.datetime:
    """``value`` if it is a timezone-aware datetime; otherwise an InputError on ``at``."""
    if not isinstance(value, dt.datetime):
        raise InputError([("at", f"must be a timezone-aware datetime, not {type(value).__name__}")], what)
    if value.utcoffset() is None:
        raise InputError([("at", "must be timezone-aware")], what)
    return value


def structure_member(data: Any, attribute_types: dict[str, str] | None = None) -> Member:
    if not isinstance(data, dict):
        raise InputError([("", f"expected a JSON object for the member, got {type(data).__name__}")], "member")
    member = _structure(_without(data, "attributes"), Member, "member")
    attrs_in = data.get("attributes") or {}
    if not isinstance(attrs_in, dict):
        raise InputError([("attributes", "must be a JSON object")], "member")
    problems, attributes = [], {}
    for key, value in attrs_in.items():
        try:
            attributes[key] = _typed(value, (attribute_types or {}).get(key))
        except ValueError as exc:
            problems.append((f"attributes.{key}", str(exc)))
    if problems:
        raise InputError(problems, "member")
    return Member(
        member.id, member.name, member.joined, member.birthday, member.tier, member.email, member.phone, attributes
    )


def _without(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k != key}
    return data


_CONTEXT_KEYS = {
    "balances",
    "stats",
    "scores",
    "history",
    "budgets",
    "earned",
    "expiring",
    "last_purchase",
    "first_purchase",
    "tier_since",
    "tier_expires",
}


def structure_context(data: Any, attribute_types: dict[str, str] | None = None) -> MemberContext:
    """A member JSON object, optionally with a ``context`` object holding the rest of MemberContext."""
    if not isinstance(data, dict):
        raise InputError([("", f"expected a JSON object for the member, got {type(data).__name__}")], "member")
    member_data = {k: v for k, v in data.items() if k != "context"}
    member = structure_member(member_data, attribute_types)
    ctx = data.get("context") or {}
    if not isinstance(ctx, dict):
        raise InputError([("context", "must be a JSON object")], "member")
    problems: list[tuple[str, str]] = []
    unknown = sorted(set(ctx) - _CONTEXT_KEYS)
    if unknown:
        problems.append(("context", "unknown field(s): " + ", ".join(unknown)))
    out: dict[str, Any] = {}
    for key in ("balances", "stats", "budgets", "earned"):
        out[key] = _decimal_map(ctx.get(key), f"context.{key}", problems)
    scores = ctx.get("scores") or {}
    out["scores"] = {
        k: (_decimal(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in scores.items()
    }
    history = {}
    for key, values in (ctx.get("history") or {}).items():
        try:
            history[key] = tuple(_datetime(v) for v in values)
        except ValueError as exc:
            problems.append((f"context.history.{key}", str(exc)))
    out["history"] = history
    expiring = {}
    for key, lots in (ctx.get("expiring") or {}).items():
        try:
            expiring[key] = tuple((_date(lot["date"]), _decimal(lot["amount"])) for lot in lots)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((f"context.expiring.{key}", f'lots are {{"date": ..., "amount": ...}} ({exc})'))
    out["expiring"] = expiring
    for key, parse in _CONTEXT_TIMES.items():
        if ctx.get(key) is not None:
            try:
                out[key] = parse(ctx[key])
            except ValueError as exc:
                problems.append((f"context.{key}", str(exc)))
    if problems:
        raise InputError(problems, "member")
    return MemberContext(member, **out)


_CONTEXT_TIMES = {
    "last_purchase": _datetime,
    "first_purchase": _datetime,
    "tier_since": _date,
    "tier_expires": _date,
}


def value_map(value, path: str, problems: list, convert=None) -> dict:
    """A JSON object of name: value, each converted (``_decimal`` by default); problems are collected by path."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        problems.append((path, "must be a JSON object"))
        return {}
    out = {}
    for key, v in value.items():
        try:
            out[key] = (convert or _decimal)(v)
        except ValueError as exc:
            problems.append((f"{path}.{key}", str(exc)))
    return out


_decimal_map = value_map


def unstructure(value) -> Any:
    return converter.unstructure(value)


def _canon(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict) or hasattr(value, "items") and callable(value.items):
        return {k: _canon(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def _dec(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


# Keys in sorted order, so the text is canonical without sorting at run time.
_EVENT_FIELDS = ("amount", "at", "channel", "currency", "discount", "id", "member", "net_amount", "original")
_EVENT_TAIL = ("payment", "referrer", "store", "type")


def _canonical_item(item: LineItem) -> dict:
    data = {"amount": _dec(item.amount)}
    if item.brand is not None:
        data["brand"] = item.brand
    if item.category is not None:
        data["category"] = item.category
    data["discount"] = _dec(item.discount)
    if item.name is not None:
        data["name"] = item.name
    data["quantity"] = _dec(item.quantity)
    data["sku"] = item.sku
    data["unit_price"] = _dec(item.unit_price)
    return data


def _canonical_event(event: Event) -> dict:
    data: dict[str, Any] = {}
    if event.attributes:
        data["attributes"] = _canon(event.attributes)
    for name in _EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            data[name] = _canon(value)
    data["at"] = event.at.astimezone(dt.UTC).isoformat()  # one instant, whatever offset it was written with
    if event.items:
        data["items"] = [_canonical_item(item) for item in event.items]
    for name in _EVENT_TAIL:
        value = getattr(event, name)
        if value is not None:
            data[name] = value
    return dict(sorted(data.items()))


_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def canonical_json(value) -> str:
    """A stable JSON text of an event (or any wire value): sorted keys, normalised decimals, no empty fields.

    Two payloads that mean the same thing ("32.00" and 32) give the same text,
    which is what idempotency compares.
    """
    if isinstance(value, Event):
        return _CANONICAL.encode(_canonical_event(value))
    return json.dumps(
        _canon(unstructure(value)), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    )


_FAST_EVENT = _fast_event  # event_and_payload takes the full path too when a test switches the fast one off

__all__ = [
    "structure_event",
    "structure_member",
    "structure_context",
    "unstructure",
    "canonical_json",
    "LineItem",
    "converter",
]
