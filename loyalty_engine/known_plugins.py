"""Names that known plugins provide, so a rule file using one that is not installed says what to install.

The plugins in this repository's ``plugins/`` folder are listed here; a third
party's plugin can only be named once it is installed.
"""

from __future__ import annotations

import importlib.metadata
import os

from .plugins import LOAD_ENV

KNOWN: dict[tuple[str, str], str] = {
    ("reward type", "cashback"): "loyalty-cashback",
    ("channel", "sms_gateway"): "loyalty-sms-gateway",
    ("scoring model", "churn_probability"): "loyalty-churn-logit",
}
ENTRY_POINTS = {
    "loyalty-cashback": "cashback",
    "loyalty-sms-gateway": "sms_gateway",
    "loyalty-churn-logit": "churn_logit",
}


def missing_plugin(kind: str, name: str, plugins) -> tuple[str, str] | None:
    """``(message, hint)`` for a ``kind`` ``name`` a known plugin provides, or None when no known plugin does."""
    package = KNOWN.get((kind, name))
    if package is None:
        return None
    failure = plugins.failure_for(package) if plugins is not None else None
    if failure is not None:
        return (
            f"{kind} '{name}' comes from the plugin '{package}', which is installed but failed to load",
            f"{failure.error} (see 'loyalty plugins')",
        )
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return (
            f"{kind} '{name}' comes from the plugin '{package}', which is not installed",
            f"install it: pip install {package} (from a checkout of loyalty-engine: pip install ./plugins/{package})",
        )
    return (
        f"{kind} '{name}' comes from the plugin '{package}', which is installed but not loaded",
        f"{LOAD_ENV}={os.environ.get(LOAD_ENV, '')!r} leaves it out; add '{package}' to it",
    )
