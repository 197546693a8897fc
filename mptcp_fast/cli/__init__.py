"""The ``mptcp-fast`` command: ``main`` (the entry point, ``decode``, ``analyze`` and ``demo``)
and ``net`` (``serve``, ``connect`` and ``proxy``)."""
