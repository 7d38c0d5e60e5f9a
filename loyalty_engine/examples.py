"""Where the bundled example programs are: inside the wheel, or dsl/examples in a checkout."""

from __future__ import annotations

from pathlib import Path


def examples_dir() -> Path:
    packaged = Path(__file__).parent / "examples"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "dsl" / "examples"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("the bundled example programs are missing from this installation")


def example_program(name: str = "coffee_chain") -> Path:
    return examples_dir() / f"{name}.loy"


def example_history(name: str = "coffee_chain") -> Path:
    """A bundled sample history (JSON lines) for an example program."""
    return examples_dir() / "history" / f"{name}.jsonl"
