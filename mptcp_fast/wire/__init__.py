"""The wire layer: MPTCP and TCP bytes, with no state beyond one packet or one stream.

``options`` (the TCP/MPTCP option codec, RFC 8684 §3 and RFC 6824), ``packet`` (IPv4/IPv6 +
TCP packets), ``crypto`` (keys, tokens, IDSNs, HMACs: RFC 8684 §3.1-3.2), ``serial``
(32/64-bit sequence arithmetic), ``dss`` (data sequence mappings, the DSS checksum and
reassembly: RFC 8684 §3.3), ``receiver`` (the data-level receive pipeline shared by the engine
and the capture analyzer), ``segment`` (one received segment read for the engine, and the two
segments an established subflow writes most) and ``established`` (their option areas).

Every layer above imports this one; it imports only ``mptcp_fast.errors``, the argument checks
and the backend switch.
"""
