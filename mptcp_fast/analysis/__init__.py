"""Capture analysis: pcap/pcapng files of MPTCP traffic to connections, subflows and streams.

``capture`` (reading captures into per-packet columns), ``analyzer`` (the ``Analyzer`` and its
report), ``midstream`` (connections whose handshake was not captured), ``timeseries`` (what
happened over time, and its plots) and ``tables`` (the report as Parquet tables).
"""
