"""The built-in event types: purchase, refund, signup and visit."""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import EVENT_COMMON, PURCHASE_FIELDS, REFUND_FIELDS


@hookimpl
def register_event_types(register):
    register("purchase", dict(PURCHASE_FIELDS))
    register("refund", dict(REFUND_FIELDS))
    register("signup", {**EVENT_COMMON, "referrer": "text"})
    register("visit", dict(EVENT_COMMON))
