"""Parse and check a program from files or text: the front half of loading."""

from __future__ import annotations

from attrs import define

from .checker import CheckedProgram, Checker
from .diagnostics import Diagnostic, Reporter, Sources
from .parser import load_files
from .schema import Schema, default_schema


@define
class CheckResult:
    program: CheckedProgram | None
    diagnostics: list[Diagnostic]
    sources: Sources

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.program is not None


def check_source(path: str, text: str | None = None, schema: Schema | None = None) -> CheckResult:
    """Parse ``path`` (or ``text`` under that name) with its includes, and check it."""
    reporter = Reporter(Sources())
    modules = load_files(path, reporter, text=text)
    syntax_errors = reporter.has_errors
    program = None
    if modules:
        program = Checker(modules, schema or default_schema(), reporter, partial=syntax_errors).check()
    return CheckResult(program, reporter.sorted(), reporter.sources)
