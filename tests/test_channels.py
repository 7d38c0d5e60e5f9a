"""The built-in e-mail and webhook channels against local servers on 127.0.0.1 (bounded, self-stopping)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import socketserver
import threading

import pytest

from loyalty_engine.default_plugins.console import ConsoleSender
from loyalty_engine.default_plugins.email import EmailSender
from loyalty_engine.default_plugins.webhook import WebhookSender, sign
from loyalty_engine.service.outbox import PermanentDeliveryError
from loyalty_engine.store.base import Message
from loyalty_engine.testing import NOW, engine_for, purchase

MESSAGE = Message("t-1:1", "m-1", "email", "谢谢惠顾, 王芳!", "Thanks", NOW, "Your points", "wang@example.com")


class SMTPRecorder(socketserver.ThreadingTCPServer):
    """Just enough SMTP to accept mail: records each DATA payload."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.mails: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _SMTPHandler)


class _SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 test ESMTP")
        for _ in range(100):  # bounded conversation
            line = self.rfile.readline()
            if not line:
                return
            verb = line.split(b" ")[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250-test")
                self.reply("250 8BITMIME")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.reply("250 ok")
            elif verb == b"DATA":
                self.reply("354 go on")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = self.rfile.readline()
                    if not chunk:
                        return
                    data += chunk
                self.server.mails.append(data[:-5])
                self.reply("250 queued")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


@pytest.fixture
def smtp():
    server = SMTPRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_goes_to_the_member_with_subject_and_dedupe_key(smtp):
    sender = EmailSender(host="127.0.0.1", port=smtp.server_address[1], sender="club@example.com", timeout=5)
    sender.send(MESSAGE)
    (raw,) = smtp.mails
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["To"] == "wang@example.com" and mail["From"] == "club@example.com"
    assert mail["Subject"] == "Your points" and mail["X-Loyalty-Dedupe-Key"] == "t-1:1"
    assert mail.get_content().strip() == "谢谢惠顾, 王芳!"
    again = EmailSender(host="127.0.0.1", port=smtp.server_address[1]).compose(MESSAGE)
    assert again["Message-ID"] == mail["Message-ID"]  # a resend after a crash is recognisably the same mail


def test_email_without_an_address_is_permanent_and_an_unreachable_host_is_retried():
    with pytest.raises(PermanentDeliveryError, match="no e-mail address"):
        EmailSender(host="127.0.0.1").send(Message("k", "m-9", "email", "hi", "r", NOW))
    with pytest.raises(OSError):
        EmailSender(host="127.0.0.1", port=1, timeout=1).send(MESSAGE)  # nothing listens on port 1


def test_webhook_posts_json_signed_with_hmac(http_recorder):
    WebhookSender(http_recorder.url, secret="s3cret", timeout=5).send(MESSAGE)
    ((headers, body),) = http_recorder.requests
    assert json.loads(body)["body"] == "谢谢惠顾, 王芳!" and headers["Idempotency-Key"] == "t-1:1"
    expected = hmac.new(b"s3cret", headers["X-Loyalty-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Loyalty-Signature"] == "sha256=" + expected.hexdigest()
    assert sign("s3cret", headers["X-Loyalty-Timestamp"], body) == headers["X-Loyalty-Signature"]


def test_webhook_status_decides_retry_or_dead_letter(http_recorder):
    engine = engine_for('rule "Hook" on purchase { send webhook "bought {net_amount}" }\n')
    engine.process(purchase("t-1", "m-1", ("LATTE", "coffee", 1, "30.00")))
    senders, missing = engine.senders({"webhook": {"url": http_recorder.url, "secret": "k"}}, only=["webhook"])
    assert missing == {}
    http_recorder.status = 503
    report = engine.deliver(senders, now=NOW)
    assert report.retried == 1 and "503" in report.errors[0]
    http_recorder.status = 410
    report = engine.deliver(senders, now=NOW + dt.timedelta(hours=1))
    assert report.dead == 1 and "410" in report.errors[0]
    assert len(http_recorder.requests) == 2


def test_console_prints_one_line_per_message(capsys):
    ConsoleSender().send(MESSAGE)
    assert capsys.readouterr().out == "email -> m-1 [Your points]: 谢谢惠顾, 王芳!  (key t-1:1)\n"
