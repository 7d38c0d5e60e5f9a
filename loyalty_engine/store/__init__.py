"""Storage: the protocol the engine depends on and the embedded SQLite implementation."""

from .base import CouponRecord, LedgerEntry, Lot, MemberRecord, Message, Store, StoredEvent
from .sqlite import SQLiteStore

__all__ = ["CouponRecord", "LedgerEntry", "Lot", "MemberRecord", "Message", "SQLiteStore", "Store", "StoredEvent"]
