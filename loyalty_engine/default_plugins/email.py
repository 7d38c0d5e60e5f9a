"""The e-mail channel: one message per member e-mail, sent with smtplib to a configured host.

Configuration (``[channels.email]`` in loyalty.toml): ``host`` (required),
``port`` (25), ``sender`` ("loyalty@localhost"), ``username``/``password``,
``starttls`` (false), ``ssl`` (false), ``timeout`` seconds (10). The dedupe key
goes out as the Message-ID and an ``X-Loyalty-Dedupe-Key`` header, so a message
sent twice after a crash is recognisable as the same one.
"""

import hashlib
import smtplib
from email.message import EmailMessage

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import Channel
from loyalty_engine.service.outbox import PermanentDeliveryError


class EmailSender:
    def __init__(
        self,
        host: str,
        port: int = 25,
        sender: str = "loyalty@localhost",
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 10.0,
    ):
        self.host, self.port, self.sender = host, int(port), sender
        self.username, self.password = username, password
        self.starttls, self.ssl, self.timeout = bool(starttls), bool(ssl), float(timeout)

    def compose(self, message) -> EmailMessage:
        if not message.address:
            raise PermanentDeliveryError(f"member '{message.member}' has no e-mail address")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.address
        mail["Subject"] = message.subject or ""
        digest = hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@loyalty-engine>"
        mail["X-Loyalty-Dedupe-Key"] = message.dedupe_key
        mail.set_content(message.body)
        return mail

    def send(self, message) -> None:
        mail = self.compose(message)
        smtp_class = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(mail)


@hookimpl
def register_channels(register):
    register(
        Channel(
            "email",
            "e-mail to the member's address",
            subject=True,
            address="email",
            factory=lambda config: EmailSender(**config),
            needs=("host",),
        )
    )
