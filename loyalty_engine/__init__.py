"""loyalty-engine: an embeddable rules engine for loyalty programs."""

__version__ = "0.1.0"
