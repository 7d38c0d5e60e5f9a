"""``python -m loyalty_engine``: the same as the ``loyalty`` command."""

from .cli import main

main()
