"""The webhook channel: each message as a JSON POST, signed with HMAC-SHA256, with a timeout.

Configuration (``[channels.webhook]``): ``url`` (required), ``secret`` (signs
the body), ``timeout`` seconds (5). Headers: ``Idempotency-Key`` (the message's
dedupe key, so the receiver drops a repeat), ``X-Loyalty-Timestamp`` and
``X-Loyalty-Signature: sha256=HEX`` of ``"{timestamp}.{body}"`` with the secret.
A 2xx answer is delivered; 408, 429 and 5xx are retried; any other 4xx is
permanent (dead-lettered at once). :func:`post_json` is reusable by channel
plugins that speak HTTP.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import Channel
from loyalty_engine.service.outbox import PermanentDeliveryError

RETRIED_STATUS = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def post_json(url: str, payload: dict, *, dedupe_key: str, secret: str | None = None, timeout: float = 5.0,
              headers: dict | None = None) -> int:  # fmt: skip
    """POST ``payload`` as JSON; returns the status, raises on failure (PermanentDeliveryError when a retry cannot help)."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    sent = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": dedupe_key,
            "X-Loyalty-Timestamp": timestamp, **(headers or {})}  # fmt: skip
    if secret:
        sent["X-Loyalty-Signature"] = sign(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in RETRIED_STATUS:
            raise PermanentDeliveryError(f"{url} answered {exc.code} {exc.reason}") from exc
        raise RuntimeError(f"{url} answered {exc.code} {exc.reason}") from exc


def message_payload(message) -> dict:
    return {
        "dedupe_key": message.dedupe_key,
        "member": message.member,
        "channel": message.channel,
        "address": message.address,
        "subject": message.subject,
        "body": message.body,
        "source": message.source,
        "created_at": message.created_at.isoformat(),
    }


class WebhookSender:
    def __init__(self, url: str, secret: str | None = None, timeout: float = 5.0):
        self.url, self.secret, self.timeout = url, secret, float(timeout)

    def send(self, message) -> None:
        post_json(self.url, message_payload(message), dedupe_key=message.dedupe_key, secret=self.secret,
                  timeout=self.timeout)  # fmt: skip


@hookimpl
def register_channels(register):
    register(
        Channel(
            "webhook",
            "HTTP POST to the program's webhook, signed",
            factory=lambda config: WebhookSender(**config),
            needs=("url",),
        )
    )
