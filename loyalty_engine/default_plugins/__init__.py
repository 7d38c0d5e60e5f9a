"""The built-in plugins: registered through the same hooks as third-party plugins.

Each module is a small plugin; reading one is how to learn to write your own
(docs/plugins.md). They load first, in this order, before installed plugins.
"""

DEFAULT_PLUGINS = (
    "loyalty_engine.default_plugins.events",
    "loyalty_engine.default_plugins.functions",
    "loyalty_engine.default_plugins.points",
    "loyalty_engine.default_plugins.coupons",
    "loyalty_engine.default_plugins.tiers",
    "loyalty_engine.default_plugins.messages",
    "loyalty_engine.default_plugins.console",
    "loyalty_engine.default_plugins.email",
    "loyalty_engine.default_plugins.webhook",
    "loyalty_engine.default_plugins.scoring",
)
