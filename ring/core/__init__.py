"""The pure protocol core of ringkv.

Nothing under ``ring.core`` performs IO or reads the clock or a random source: time (``now_ms``)
and randomness (``rng: random.Random``) are always passed in, so the same code runs under the real
uvloop shell and under the seeded simulator in ``ring.sim``. ``tests/unit/test_purity.py``
enforces it.
"""
