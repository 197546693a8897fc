"""The compiled engine: setup.py builds the engine's per-packet modules from their one source
(``mptcp_fast/engine/<name>.py``, and ``netem.py`` and ``apps.py`` of ``mptcp_fast/sim/``, in
Cython's pure-Python mode, typed by ``pyx/mptcp_fast/_cengine/<name>.pxd``) into
``mptcp_fast._cengine.<name>``.

Nothing here is imported by name: the public ``Endpoint``, ``Network`` and ``BulkApp`` build
their compiled twin when the compiled backend is active (``mptcp_fast._backend.PublicClass``),
and every object they make comes from the same twin. A pure install leaves this package
empty; the list of its modules is ``mptcp_fast._backend.ENGINE_MODULES``.
"""
