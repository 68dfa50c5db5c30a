"""Command-line tools: ``ringctl`` (``ring.cli.ringctl``) and ``ringd``.

``app`` holds the exit codes, the command registry and the parser; ``data`` and ``transfer``
register the key and dump commands; ``dump`` is the dump file format; ``output`` says how bytes
are shown as text and JSON.
"""
