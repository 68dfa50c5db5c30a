"""Search: a full-text index on the ringkv key-value API (design in ``search/index.py`` for now)."""

from search.index import Hit, Index, RepairReport
from search.query import QueryError

__all__ = ["Hit", "Index", "QueryError", "RepairReport"]
