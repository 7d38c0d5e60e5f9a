"""The built-in functions of the rules language (weekday, days_since, floor, score ...).

Their implementations live in :mod:`loyalty_engine.language.builtins`; this
plugin registers each one, as any plugin registers its own functions.
"""

from loyalty_engine.hookspecs import hookimpl
from loyalty_engine.language.builtins import FUNCTIONS


@hookimpl
def register_functions(register):
    for function in FUNCTIONS:
        register(function)
