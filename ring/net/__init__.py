"""The network shell around the pure core: frames and hello (``codec``), TCP connections and
peer links (``tcp``, ``peers``), gossip datagrams (``udp``), and the ``runtime`` that feeds the
core events and carries out its effects on a uvloop event loop. ``clientops`` holds what the
sync (``ring.client``) and async (``ring.aio``) clients share."""
