"""mptcp_fast: a Multipath TCP (RFC 8684 / RFC 6824) engine with compiled hot paths.

``mptcp_fast.BACKEND`` is ``"cython"`` or ``"python"``: which implementation of
the hot paths is active. ``MPTCP_FAST_PURE=1`` in the environment forces the
pure-Python one.
"""

from . import _backend
from ._version import __version__
from .errors import CaptureError, MptcpError, OptionError, PacketError, ProtocolError
from .wire import crypto, dss, options, packet

__all__ = ["BACKEND", "__version__", "MptcpError", "OptionError", "CaptureError", "PacketError",
           "ProtocolError", "crypto", "dss", "options", "packet"]


def __getattr__(name):
    if name == "BACKEND":
        return _backend.active()
    raise AttributeError(f"module 'mptcp_fast' has no attribute {name!r}")
