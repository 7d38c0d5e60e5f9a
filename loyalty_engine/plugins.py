"""Loading plugins and collecting what they register.

:class:`Plugins` holds one pluggy manager with the built-in plugins
(``default_plugins.DEFAULT_PLUGINS``), the installed ones (entry-point group
``loyalty_engine``, loaded once) and any passed in code, and a :class:`Registry`
of the reward types, channels, scoring models, functions and event types they
registered, each with the plugin that provided it.

Environment variables:

- ``LOYALTY_LOAD_PLUGINS``: comma-separated plugins to load, by entry-point or
  distribution name (empty: none); unset loads every installed plugin.
  Built-ins always load.
- ``LOYALTY_TRACE_PLUGINS=1``: print every hook call to standard error.

A plugin that fails to import, names a hook that does not exist, or raises while
registering is reported in :attr:`Plugins.failures` and the others still load.
Two plugins registering the same name is a :class:`PluginError` naming both.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy
from attrs import define, field, frozen

from . import hookspecs
from .errors import PluginError
from .language.diagnostics import did_you_mean
from .language.schema import (
    EVENT_COMMON,
    Channel,
    Function,
    RewardType,
    Schema,
    ScoringModel,
)

GROUP = "loyalty_engine"
LOAD_ENV = "LOYALTY_LOAD_PLUGINS"
TRACE_ENV = "LOYALTY_TRACE_PLUGINS"
REGISTRATION_HOOKS = {
    "register_reward_types": ("reward type", RewardType),
    "register_channels": ("channel", Channel),
    "register_scoring_models": ("scoring model", ScoringModel),
    "register_functions": ("function", Function),
}
REQUIRED_BEHAVIOUR = {RewardType: "apply", ScoringModel: "score", Function: "impl"}
KINDS = ("reward type", "channel", "scoring model", "function", "event type")


@frozen
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    name: str
    source: str
    error: str


@define
class PluginInfo:
    """One loaded plugin: where it came from, what it provides, which hooks it implements."""

    name: str
    source: str  # "built-in", "entry point (loyalty-cashback 0.1.0)", "code"
    provides: dict[str, list[str]] = field(factory=dict)  # kind -> names
    hooks: list[str] = field(factory=list)
    distribution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "distribution": self.distribution,
            "provides": {k: v for k, v in self.provides.items() if v},
            "hooks": self.hooks,
        }


@define
class Registry:
    """Everything the loaded plugins registered, with the plugin behind each name."""

    reward_types: dict[str, RewardType] = field(factory=dict)
    channels: dict[str, Channel] = field(factory=dict)
    scoring_models: dict[str, ScoringModel] = field(factory=dict)
    functions: dict[str, Function] = field(factory=dict)
    event_types: dict[str, dict[str, str]] = field(factory=dict)
    provided_by: dict[tuple[str, str], str] = field(factory=dict)

    def add(self, kind: str, name: str, value: Any, plugin: str) -> None:
        previous = self.provided_by.get((kind, name))
        if previous is not None:
            raise PluginError(
                f"{kind} '{name}' is registered by both '{previous}' and '{plugin}'; "
                f"uninstall one, or limit the plugins loaded with {LOAD_ENV}",
                plugin=plugin,
            )
        self.provided_by[(kind, name)] = plugin
        table = {
            "reward type": self.reward_types,
            "channel": self.channels,
            "scoring model": self.scoring_models,
            "function": self.functions,
            "event type": self.event_types,
        }[kind]
        table[name] = value


class Plugins:
    """The plugin manager of an engine: built-ins, installed plugins and plugins passed in code."""

    def __init__(self, extra: Iterable[Any] = (), *, entry_points: bool = True):
        from .default_plugins import DEFAULT_PLUGINS

        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.tracing = bool(os.environ.get(TRACE_ENV))
        for module_name in DEFAULT_PLUGINS:
            self._add(importlib.import_module(module_name), module_name, "built-in")
        if entry_points:
            self._load_entry_points()
        for plugin in extra:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self._add(plugin, name, "code")
        self.registry = self._collect()
        self._schema: Schema | None = None
        self.before_evaluate = self._impls("before_evaluate")
        self.after_commit = self._impls("after_commit")

    # -------------------------------------------------------------- loading

    def _load_entry_points(self) -> None:
        wanted = os.environ.get(LOAD_ENV)
        allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            version = ep.dist.version if ep.dist is not None else None
            source = f"entry point {ep.name} ({dist} {version})" if dist else f"entry point {ep.name}"
            name = dist or ep.name  # what the user installed, e.g. loyalty-cashback
            if self.pm.has_plugin(name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not stop the others
                self.failures.append(PluginFailure(name, source, f"{type(exc).__name__}: {exc}"))
                continue
            self._add(plugin, name, source, dist)

    def _add(self, plugin: Any, name: str, source: str, distribution: str | None = None) -> None:
        if self.pm.is_registered(plugin):  # e.g. passed in code and installed too: it is loaded, once
            return
        unknown = [
            attr
            for attr in dir(plugin)
            if self.pm.parse_hookimpl_opts(plugin, attr) is not None and not hasattr(hookspecs, attr)
        ]
        if unknown:
            specs = [n for n in dir(hookspecs) if not n.startswith("_")]
            shown = [f"{u} ({hint})" if (hint := did_you_mean(u, specs)) else u for u in sorted(unknown)]
            self.failures.append(PluginFailure(name, source, "implements hooks that do not exist: " + ", ".join(shown)))
            return
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:  # another plugin under the same name
            self.failures.append(PluginFailure(name, source, str(exc)))
            return
        except pluggy.PluginValidationError as exc:
            self.failures.append(PluginFailure(name, source, str(exc)))
            return
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or ())
        self.info[name] = PluginInfo(name, source, {k: [] for k in KINDS}, hooks, distribution)

    def _collect(self) -> Registry:
        """Call each registration hook once per plugin, so every name is tied to the plugin that gave it."""
        registry = Registry()
        for hook_name, (kind, cls) in REGISTRATION_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                self._call_register(registry, impl, plugin, kind, cls)
        for impl in self.pm.hook.register_event_types.get_hookimpls():
            self._call_register(registry, impl, impl.plugin_name, "event type", None)
        return registry

    def _call_register(self, registry: Registry, impl, plugin: str, kind: str, cls) -> None:
        staged: list[tuple[str, Any]] = []

        def register(item: Any, fields: dict[str, str] | None = None) -> None:
            if cls is None:  # event types: register(name, fields)
                if not isinstance(item, str) or not isinstance(fields, dict):
                    raise TypeError("register_event_types: call register(name, {field: type, ...})")
                staged.append((item, {**EVENT_COMMON, **fields}))
                return
            if not isinstance(item, cls):
                raise TypeError(f"{impl.function.__name__}: register() takes a {cls.__name__}, not {item!r}")
            needed = REQUIRED_BEHAVIOUR.get(cls)
            if needed and getattr(item, needed) is None:
                raise TypeError(f"{cls.__name__} '{item.name}' has no '{needed}' callable")
            staged.append((item.name, attrs.evolve(item, provider=plugin)))

        self.trace(impl.function.__name__, plugin)
        try:
            impl.function(register=register)
        except Exception as exc:
            self.failures.append(PluginFailure(plugin, self.info[plugin].source, f"{type(exc).__name__}: {exc}"))
            return
        for name, value in staged:
            registry.add(kind, name, value, plugin)
            self.info[plugin].provides[kind].append(name)

    def _impls(self, hook_name: str) -> list[tuple[str, Any]]:
        return [(impl.plugin_name, impl.function) for impl in getattr(self.pm.hook, hook_name).get_hookimpls()]

    # -------------------------------------------------------------- what the engine uses

    def schema(self) -> Schema:
        """A fresh copy of the schema the loaded plugins make up (for the checker and compiler)."""
        if self._schema is None:
            reg = self.registry
            schema = Schema()
            schema.event_types = {k: dict(v) for k, v in reg.event_types.items()}
            for fn in reg.functions.values():
                schema.add_function(fn)
            for channel in reg.channels.values():
                schema.add_channel(channel)
            for reward in reg.reward_types.values():
                schema.add_reward_type(reward)
            for model in reg.scoring_models.values():
                schema.add_score(model)
            schema.plugins = self
            self._schema = schema
        return self._schema.copy()

    def failure_for(self, name: str) -> PluginFailure | None:
        """Why the plugin called ``name`` (its distribution name) did not load, if it did not."""
        return next((f for f in self.failures if f.name == name), None)

    def trace(self, hook: str, plugin: str, detail: str = "") -> None:
        """With LOYALTY_TRACE_PLUGINS set, one line on standard error per hook call."""
        if self.tracing:
            sys.stderr.write(f"loyalty-plugins: {hook} -> {plugin}{' ' + detail if detail else ''}\n")

    def call_before_evaluate(self, event, member, engine) -> None:
        for plugin, function in self.before_evaluate:
            self.trace("before_evaluate", plugin, f"event {event.id}")
            try:
                function(event=event, member=member, engine=engine)
            except Exception as exc:
                raise PluginError(
                    f"plugin '{plugin}' refused event '{event.id}' in before_evaluate: {type(exc).__name__}: {exc}",
                    plugin=plugin,
                ) from exc

    def call_after_commit(self, event, result, engine) -> list[str]:
        errors = []
        for plugin, function in self.after_commit:
            self.trace("after_commit", plugin, f"event {event.id}")
            try:
                function(event=event, result=result, engine=engine)
            except Exception as exc:  # the event is committed: report, and let the other plugins run
                errors.append(f"plugin '{plugin}' failed in after_commit for '{event.id}': {type(exc).__name__}: {exc}")
        return errors

    def list(self) -> list[PluginInfo]:
        return list(self.info.values())


_DEFAULT: Plugins | None = None
_LOCK = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugins: built-ins plus every installed plugin (loaded once, on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _LOCK:
            if _DEFAULT is None:
                _DEFAULT = Plugins()
    return _DEFAULT


def reset_plugins() -> None:
    """Forget the loaded plugins, so the next :func:`get_plugins` loads them again (tests, env changes)."""
    global _DEFAULT
    with _LOCK:
        _DEFAULT = None


_CORE: Plugins | None = None


def core_schema() -> Schema:
    """The schema of the built-ins alone, whatever is installed (for reproducible checks and tests)."""
    global _CORE
    if _CORE is None:
        with _LOCK:
            if _CORE is None:
                _CORE = Plugins(entry_points=False)
    return _CORE.schema()
