"""Feeds: KVS-style doubly linked lists of entries on the ringkv key-value API."""
