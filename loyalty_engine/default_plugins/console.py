"""The console channel: each message as one line on standard output (or any stream)."""

import sys

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.schema import Channel


class ConsoleSender:
    """Writes each message as one line to a stream (standard output by default)."""

    def __init__(self, stream=None):
        self.stream = stream

    def send(self, message) -> None:
        stream = self.stream or sys.stdout
        subject = f" [{message.subject}]" if message.subject else ""
        stream.write(f"{message.channel} -> {message.member}{subject}: {message.body}  (key {message.dedupe_key})\n")


@hookimpl
def register_channels(register):
    register(Channel("console", "print to the engine's log", factory=lambda config: ConsoleSender()))
