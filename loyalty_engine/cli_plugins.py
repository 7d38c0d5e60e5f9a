"""``loyalty plugins``: every plugin, where it came from and what it provides."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from .cli import err, main, out
from .errors import PluginError
from .plugins import KINDS, get_plugins

PLURAL = {
    "reward type": "reward types",
    "channel": "channels",
    "scoring model": "scoring models",
    "function": "functions",
    "event type": "event types",
}


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every name a built-in provides (long).")
def plugins_command(as_json: bool, show_all: bool) -> None:
    """List the loaded plugins (built-in, installed, failed) and what each provides.

    Exit status 1 when a plugin failed to load or two plugins register the same name.
    """
    try:
        loaded = get_plugins()
    except PluginError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    if as_json:
        data = {
            "plugins": [p.to_dict() for p in loaded.list()],
            "failed": [{"name": f.name, "source": f.source, "error": f.error} for f in loaded.failures],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        sys.exit(1 if loaded.failures else 0)
    table = Table(title="Plugins", show_lines=False)
    table.add_column("plugin")
    table.add_column("source")
    table.add_column("provides")
    table.add_column("hooks")
    for info in loaded.list():
        parts = []
        for kind in KINDS:
            names = info.provides.get(kind) or []
            if not names:
                continue
            shown = names if show_all or len(names) <= 6 else [*names[:5], f"... {len(names) - 5} more"]
            parts.append(f"{PLURAL[kind]}: {', '.join(shown)}")
        hooks = [h for h in info.hooks if not h.startswith("register_")]
        table.add_row(info.name, info.source, "; ".join(parts) or "-", ", ".join(hooks) or "-")
    out.print(table)
    if loaded.failures:
        failed = Table(title="Failed to load", title_style="bold red")
        failed.add_column("plugin")
        failed.add_column("source")
        failed.add_column("error")
        for f in loaded.failures:
            failed.add_row(f.name, f.source, f.error)
        out.print(failed)
        sys.exit(1)
