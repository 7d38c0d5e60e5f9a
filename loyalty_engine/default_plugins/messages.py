"""The message effect: ``send CHANNEL "text"`` queues a message in the outbox.

Also declares the ``sms`` and ``push`` channels. They have no sender of their
own: a transport plugin delivers them, named in the configuration
(``[channels.sms] via = "sms_gateway"``).
"""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import Channel, RewardType


def apply(ctx):
    return ctx.queue_message(ctx.args["channel"], ctx.args["text"], ctx.args["subject"])


@hookimpl
def register_reward_types(register):
    register(
        RewardType(
            "message",
            {"channel": "text", "text": "text", "subject": "text"},
            doc="a message in the outbox, delivered by its channel with retries and a dedupe key",
            apply=apply,
            keyword="send",
        )
    )


@hookimpl
def register_channels(register):
    register(Channel("sms", "text message to the member's phone (delivered by a transport plugin)", address="phone"))
    register(Channel("push", "app push notification (delivered by a transport plugin)", subject=True))
