"""Capture analysis: pcap/pcapng files of MPTCP traffic to connections, subflows and streams.

``analyze(path)`` gives the report of one capture and ``analyze_file(path)`` the same for one
file among many (it never raises for the file's own faults); ``build_model`` keeps the
analysed connections and, on request, the per-packet table. The modules beneath, each
importing only those after it: ``model`` (one read of a capture into what every output
reads), ``tables`` (Parquet), ``timeseries`` and ``figures`` (what happened over time, and
its plots), ``analyzer`` (the ``Analyzer`` that reads packets into connections and its
report), ``midstream`` (connections whose handshake was not captured), ``packets`` (the
per-packet table) and ``capture`` (reading captures into per-packet columns).
"""

__all__ = ["CaptureModel", "analyze", "analyze_file", "build_model"]


def __getattr__(name: str):
    # Imported on first use (PEP 562): the backend switch imports this package's compiled
    # twins while it starts, before the modules the model needs can bind to it.
    if name in __all__:
        from . import model
        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
