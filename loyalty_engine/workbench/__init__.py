"""The analyst's workbench: rule tests beside rule files, invariants, explain, describe.

- :mod:`.testfile` reads ``PROGRAM.test.yaml`` files (with line numbers for every error);
- :mod:`.runner` runs their examples through a real in-memory Engine and measures rule coverage;
- :mod:`.invariants` checks properties for every purchase with hypothesis;
- :mod:`.describe` writes a program as terms a customer reads, and a cashier sheet.
"""
