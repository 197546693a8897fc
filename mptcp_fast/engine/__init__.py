"""The sans-IO MPTCP engine (issue #11), after aioquic's QuicConnection: no sockets, clocks or
threads inside; whole IP packets in and out; time passed in by the caller.

Built so far: the events users read (``events``), the retransmission timer of each subflow
(``rtt``, RFC 6298), congestion control behind one small interface (``cc``: Reno, CUBIC, and
the coupled LIA of RFC 6356), the subflow schedulers (``scheduler``: lowest RTT, round-robin,
redundant) and initial sequence numbers (``isn``, RFC 6528). The subflow TCP state machine,
the connection and the endpoint come next. The emulated network that drives it in tests is
``mptcp_fast.netem``; the packet layer, option codec, crypto, sender bookkeeping and receive
pipeline it is built on are ``packet``, ``options``, ``crypto``, ``dss`` and ``receiver``.
"""
