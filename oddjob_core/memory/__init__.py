"""The in-memory store: for tests, examples and measuring the engine alone."""

from .store import MemoryStorage

__all__ = ["MemoryStorage"]
