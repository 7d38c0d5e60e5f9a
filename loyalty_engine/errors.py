"""The error hierarchy: every error the engine raises on purpose derives from LoyaltyError."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .language.diagnostics import Diagnostic


class LoyaltyError(Exception):
    """Base class of all documented loyalty-engine errors."""


class RuleFileError(LoyaltyError):
    """A rule file (or a set of included files) has errors.

    ``diagnostics`` lists every error and warning found, each with path, line,
    column and an optional hint; ``str()`` renders them with source line and caret.
    """

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.errors))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def __repr__(self) -> str:
        first = self.errors[0] if self.errors else None
        where = f" first at {first.path}:{first.line}:{first.column}" if first else ""
        return f"<RuleFileError {len(self.errors)} error(s){where}>"


class InputError(LoyaltyError, ValueError):
    """Input data (an event, a member, a context) is invalid.

    ``problems`` is a list of ``(path, message)`` pairs such as
    ``("items[2].unit_price", "'abc' is not a decimal amount")``.
    """

    def __init__(self, problems: list[tuple[str, str]], what: str = "input"):
        self.problems = list(problems)
        self.what = what
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        super().__init__(f"invalid {what}: " + "; ".join(lines))

    def __repr__(self) -> str:
        return f"<InputError {self.what} {self.problems!r}>"


class EvaluationError(LoyaltyError):
    """A rule failed while evaluating an event (e.g. a missing score), naming the rule."""

    def __init__(self, message: str, rule: str | None = None, location: str | None = None):
        self.rule = rule
        self.location = location
        prefix = f"{location}: " if location else ""
        suffix = f" (rule '{rule}')" if rule else ""
        super().__init__(f"{prefix}{message}{suffix}")


class StoreError(LoyaltyError):
    """The store could not complete a transaction; nothing of it was written."""


class ConflictError(LoyaltyError):
    """An event id was seen before with a different payload (like an idempotency key reused)."""

    def __init__(self, event_id: str, message: str | None = None):
        self.event_id = event_id
        super().__init__(
            message
            or f"event '{event_id}' was already processed with a different payload; "
            "use a new id for a new event, or resend the original payload"
        )


class RefusedError(LoyaltyError):
    """An operation was refused for a business reason (``reason``); nothing was written.

    ``code`` names the reason for programs: ``insufficient_balance``,
    ``coupon_expired``, ``coupon_used``, ``min_spend``, ``not_transferable`` ...
    """

    def __init__(self, code: str, reason: str, remembered: bool = False):
        self.code = code
        self.reason = reason
        self.remembered = remembered  # True when it is the stored answer of an earlier request with this id
        super().__init__(reason)

    def __repr__(self) -> str:
        return f"<RefusedError {self.code}: {self.reason}>"


class PluginError(LoyaltyError):
    """A plugin failed: it could not load, registered a name twice, or raised while working.

    ``plugin`` names the plugin; ``rule`` and ``location`` the rule it was
    working for, when there is one. Raised inside an event, the whole event was
    rolled back and its id stays free for a retry.
    """

    def __init__(self, message: str, plugin: str | None = None, rule: str | None = None, location: str | None = None):
        self.plugin = plugin
        self.rule = rule
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)

    def __repr__(self) -> str:
        return f"<PluginError plugin={self.plugin!r} rule={self.rule!r}: {self}>"
