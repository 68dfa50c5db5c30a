"""Search: an inverted index and sorted sets on the ringkv key-value API (not built yet)."""
