"""The deployment configuration, ``loyalty.toml``: channel settings and plugin settings.

```toml
[channels.email]
host = "smtp.example.com"
sender = "club@example.com"

[channels.sms]
via = "sms_gateway"          # deliver sms through the gateway plugin's sender

[channels.sms_gateway]
url = "https://sms.example.com/v1/messages"
api_key = "..."
```

Secrets can come from the environment: a string value ``"env:NAME"`` is read
from the variable ``NAME``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError

DEFAULT_PATH = "loyalty.toml"


def load_config(path: str | Path | None = None) -> dict[str, Any] | None:
    """The configuration at ``path`` (default: ./loyalty.toml when it exists); None when there is none."""
    if path is None:
        if not Path(DEFAULT_PATH).exists():
            return None
        path = DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InputError([(str(path), "no such configuration file")], "configuration") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError([(str(path), str(exc))], "configuration") from None
    except UnicodeDecodeError as exc:
        raise InputError([(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})")], "configuration") from None
    except OSError as exc:
        raise InputError([(str(path), f"cannot be read: {exc.strerror}")], "configuration") from None
    return _resolve(data, str(path))


def _resolve(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, f"{where}: {k}") for k, v in value.items()}
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise InputError([(where, f"environment variable {name} is not set")], "configuration")
        return os.environ[name]
    return value
