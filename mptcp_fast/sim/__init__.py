"""Virtual time: an emulated multipath network and what runs on it.

``netem`` (paths with delay, rate, loss and reordering, on a virtual clock), ``apps`` (a bulk
transfer between two engines), ``demo`` (the ``mptcp-fast demo`` transfer), ``attacks`` and
``blind`` (on-path and off-path attackers against the engine). Nothing here opens a socket.
"""
