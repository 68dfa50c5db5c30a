"""Feeds: KVS-style doubly linked lists of entries on the ringkv key-value API."""

from feeds.api import Entry, Feeds, Page
from feeds.repair import RepairReport

__all__ = ["Entry", "Feeds", "Page", "RepairReport"]
