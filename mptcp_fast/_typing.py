"""The types of what the public API accepts, named once for annotations.

Imported only under ``typing.TYPE_CHECKING``: nothing here exists at run time, so the package
needs no typing back-port installed (type checkers bring their own ``typing_extensions``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress
    from typing import Union

    from typing_extensions import Buffer, TypeAlias

    # Anything that exposes bytes through the buffer protocol: bytes, bytearray, memoryview,
    # numpy arrays, mmap (what the codec, the packet layer and the receive pipeline read in
    # place, and what the writers write into when it is writable).
    BytesLike: TypeAlias = Buffer
    # An IP address as the API takes it: text ("198.18.0.1", "2001:2::1"), packed bytes (4 or
    # 16) or an ipaddress object (mptcp_fast._check.address).
    Address: TypeAlias = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]
