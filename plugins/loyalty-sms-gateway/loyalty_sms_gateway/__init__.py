"""loyalty-sms-gateway: an ``sms_gateway`` channel posting each message to an HTTP SMS gateway."""

from loyalty_engine import Channel, hookimpl
from loyalty_engine.default_plugins.webhook import post_json
from loyalty_engine.service.outbox import PermanentDeliveryError


class SmsGatewaySender:
    """Posts ``{"to", "text", "sender_id", "reference"}`` to ``url`` with a bearer token and a timeout."""

    def __init__(self, url: str, api_key: str | None = None, sender_id: str | None = None, timeout: float = 5.0):
        self.url = url
        self.api_key = api_key
        self.sender_id = sender_id
        self.timeout = float(timeout)

    def send(self, message) -> None:
        if not message.address:
            raise PermanentDeliveryError(f"member '{message.member}' has no phone number")
        payload = {
            "to": message.address,
            "text": message.body,
            "sender_id": self.sender_id,
            "reference": message.dedupe_key,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        post_json(self.url, payload, dedupe_key=message.dedupe_key, timeout=self.timeout, headers=headers)


@hookimpl
def register_channels(register):
    register(
        Channel(
            "sms_gateway",
            "text message through an HTTP SMS gateway (loyalty.toml: [channels.sms_gateway] url, api_key)",
            address="phone",
            factory=lambda config: SmsGatewaySender(**config),
            needs=("url",),
        )
    )
