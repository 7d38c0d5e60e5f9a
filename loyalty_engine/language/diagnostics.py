"""Diagnostics: ``path:line:col: error: message``, the source line, a caret, a hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from attrs import define, field

from .ast import Span


@define
class Diagnostic:
    severity: str  # "error" | "warning"
    message: str
    path: str
    line: int
    column: int
    source_line: str = ""
    hint: str | None = None
    end_column: int | None = None

    def render(self) -> str:
        # a name quoted in the message may hold "\n" (written \n in a rule name): keep the head one line
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        head = f"{self.path}:{self.line}:{self.column}: {self.severity}: {message}"
        out = [head]
        if self.source_line:
            text = self.source_line.rstrip("\n").expandtabs(1)
            out.append(f"    {text}")
            width = 1
            if self.end_column and self.end_column > self.column:
                width = self.end_column - self.column
            width = max(1, min(width, max(1, len(text) - self.column + 1)))
            out.append("    " + _caret_pad(text, self.column - 1) + "^" * width)
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


def _caret_pad(text: str, upto: int) -> str:
    """Spaces up to a column, using two cells for wide (e.g. Chinese) characters."""
    import unicodedata

    pad = []
    for ch in text[:upto]:
        pad.append("  " if unicodedata.east_asian_width(ch) in ("W", "F") else " ")
    return "".join(pad)


def split_lines(text: str) -> list[str]:
    """The lines of a file as the parser numbers them: ended by "\\n" only (a "\\r" before it dropped).

    Not ``str.splitlines``, which also breaks at form feeds, "\\x1c" ... and "\\u2028": a file with one
    of those in a comment or a text would show the wrong source line under every later diagnostic.
    """
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


@define
class Sources:
    """The text of every file read for a program, to show source lines in diagnostics."""

    texts: dict[str, list[str]] = field(factory=dict)

    def add(self, path: str, text: str) -> None:
        self.texts[path] = split_lines(text)

    def line(self, path: str, line: int) -> str:
        lines = self.texts.get(path) or []
        return lines[line - 1] if 0 < line <= len(lines) else ""


@define
class Reporter:
    """Collects diagnostics for one program."""

    sources: Sources
    diagnostics: list[Diagnostic] = field(factory=list)

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self._add("error", span, message, hint)

    def warning(self, span: Span, message: str, hint: str | None = None) -> None:
        self._add("warning", span, message, hint)

    def _add(self, severity: str, span: Span, message: str, hint: str | None) -> None:
        end = span.end_column if span.end_line == span.line else None
        self.diagnostics.append(
            Diagnostic(
                severity,
                message,
                span.path,
                span.line,
                span.column,
                self.sources.line(span.path, span.line),
                hint,
                end,
            )
        )

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=lambda d: (d.path, d.line, d.column))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """``did you mean 'gold'?`` for the closest candidate, if any is close."""
    pool = sorted(set(candidates))
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            matches = [lowered[name.lower()]]
    return f"did you mean '{matches[0]}'?" if matches else None
