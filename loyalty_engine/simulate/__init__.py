"""The analyst's workbench: generate a sample history, replay it through a program, report.

- :mod:`.generate` writes a seeded, realistic history (members and events) in the wire format;
- :mod:`.state` keeps the replay's state in memory (a :class:`~loyalty_engine.store.base.Store`),
  with :mod:`.windows` for the windowed statistics;
- :mod:`.replay` streams a history through a program, day by day, with the time-driven work;
- :mod:`.report` turns what happened into figures (and compares two programs);
- :mod:`.html` draws the figures as one self-contained page.
"""
