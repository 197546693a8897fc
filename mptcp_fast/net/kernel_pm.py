"""The kernel's userspace path manager (``net.mptcp.pm_type=1``), driven over generic netlink
as ``ip mptcp`` / ``pm_nl_ctl`` do: announce and remove an address, create and destroy a
subflow on one connection (given its token). Linux only.

    with UserspacePM() as pm:                  # in the namespace of the kernel's sockets
        pm.announce(token, "198.18.2.1", address_id=5)
        pm.subflow_create(token, ("198.18.2.1", 5), ("198.18.2.2", 5000))

While a ``UserspacePM`` is open it listens to the ``mptcp_pm_events`` group: Linux accepts a
peer's MP_JOIN on a connection of the userspace path manager only while a listener exists
(``mptcp_userspace_pm_active``). The kernel's answer to each command is checked: a refusal
raises ``KernelPmError`` with the kernel's errno and reason.

The family, commands and attributes are those of the kernel's uapi ``linux/mptcp_pm.h``
(Documentation/netlink/specs/mptcp_pm.yaml).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from ..errors import MptcpError

__all__ = ["UserspacePM", "KernelPmError", "FLAG_SIGNAL", "FLAG_SUBFLOW", "FLAG_BACKUP"]

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11      # errors without the request, with a reason
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_MCAST_GROUPS = 1, 2, 7
CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GRP_ID = 1, 2
NLMSGERR_ATTR_MSG = 1

# linux/mptcp_pm.h
CMD_ANNOUNCE, CMD_REMOVE, CMD_SUBFLOW_CREATE, CMD_SUBFLOW_DESTROY = 8, 9, 10, 11
ATTR_ADDR, ATTR_TOKEN, ATTR_LOC_ID, ATTR_ADDR_REMOTE = 1, 4, 5, 6
ADDR_FAMILY, ADDR_ID, ADDR_ADDR4, ADDR_ADDR6, ADDR_PORT, ADDR_FLAGS = 1, 2, 3, 4, 5, 6
FLAG_SIGNAL, FLAG_SUBFLOW, FLAG_BACKUP = 1, 2, 4
PM_VERSION = 1


class KernelPmError(MptcpError):
    """The kernel refused a path-manager command (``errno``, and its reason when it gave one)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.errno = code


def _attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _attrs(data: bytes) -> dict:
    """The attributes of one level: {type (without flags): payload}."""
    found, i = {}, 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return found


def _address(address: str, address_id: int = 0, port: int = 0, flags: int = 0) -> bytes:
    """A nested MPTCP_PM_ADDR_ATTR_* set for one address."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    parts = [_attr(ADDR_FAMILY, struct.pack("=H", family)),
             _attr(ADDR_ADDR4 if ip.version == 4 else ADDR_ADDR6, ip.packed)]
    if address_id:
        parts.append(_attr(ADDR_ID, struct.pack("=B", address_id)))
    if port:
        parts.append(_attr(ADDR_PORT, struct.pack("=H", port)))
    if flags:
        parts.append(_attr(ADDR_FLAGS, struct.pack("=I", flags)))
    return b"".join(parts)


class UserspacePM:
    """See the module text. Opened in the calling thread's network namespace."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self._events = None
        self._seq = 0
        try:
            self._sock.bind((0, 0))
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self.family, groups = self._resolve("mptcp_pm")
            if "mptcp_pm_events" in groups:
                self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                             NETLINK_GENERIC)
                self._events.bind((0, 0))
                self._events.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
                                        groups["mptcp_pm_events"])
        except OSError as exc:
            self.close()
            raise KernelPmError(exc.errno or errno.EINVAL, "the kernel's MPTCP path manager "
                                f"is not reachable: {exc}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._sock.close()
        if self._events is not None:
            self._events.close()

    # ------------------------------------------------------------------ commands
    def announce(self, token: int, address: str, address_id: int, port: int = 0) -> None:
        """ADD_ADDR ``address`` (with ``port``) as ``address_id`` on connection ``token``."""
        self._command(CMD_ANNOUNCE, _attr(ATTR_TOKEN, struct.pack("=I", token)),
                      _attr(ATTR_ADDR | NLA_F_NESTED,
                            _address(address, address_id, port, FLAG_SIGNAL)))

    def remove(self, token: int, address_id: int) -> None:
        """REMOVE_ADDR ``address_id`` on connection ``token`` (its subflows end too)."""
        self._command(CMD_REMOVE, _attr(ATTR_TOKEN, struct.pack("=I", token)),
                      _attr(ATTR_LOC_ID, struct.pack("=B", address_id)))

    def subflow_create(self, token: int, local: tuple, remote: tuple) -> None:
        """A new subflow from ``local`` (address, address id) to ``remote`` (address, port)."""
        self._command(CMD_SUBFLOW_CREATE, _attr(ATTR_TOKEN, struct.pack("=I", token)),
                      _attr(ATTR_ADDR | NLA_F_NESTED, _address(local[0], local[1])),
                      _attr(ATTR_ADDR_REMOTE | NLA_F_NESTED,
                            _address(remote[0], port=remote[1])))

    def subflow_destroy(self, token: int, local: tuple, remote: tuple) -> None:
        """Close the subflow from ``local`` to ``remote`` (both (address, port))."""
        self._command(CMD_SUBFLOW_DESTROY, _attr(ATTR_TOKEN, struct.pack("=I", token)),
                      _attr(ATTR_ADDR | NLA_F_NESTED, _address(local[0], port=local[1])),
                      _attr(ATTR_ADDR_REMOTE | NLA_F_NESTED,
                            _address(remote[0], port=remote[1])))

    # ------------------------------------------------------------------ netlink
    def _request(self, family: int, command: int, *attributes: bytes) -> bytes:
        self._seq += 1
        body = struct.pack("=BBH", command, PM_VERSION, 0) + b"".join(attributes)
        header = struct.pack("=IHHII", 16 + len(body), family, NLM_F_REQUEST | NLM_F_ACK,
                             self._seq, 0)
        self._sock.send(header + body)
        while True:
            data = self._sock.recv(65536)
            i = 0
            while i + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, i)
                if length < 16:
                    break
                message = data[i:i + length]
                i += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", message, 16)
                    if code:
                        raise KernelPmError(-code, self._reason(message, -code))
                    return b""
                return message[20:]                      # a reply (before its ACK)

    @staticmethod
    def _reason(message: bytes, code: int) -> str:
        """The extended ACK's text (NLMSGERR_ATTR_MSG) when the kernel gave one: after the
        header, the error and the request's header (capped: NETLINK_CAP_ACK)."""
        extra = _attrs(message[36:])
        text = extra.get(NLMSGERR_ATTR_MSG, b"").rstrip(b"\0").decode(errors="replace")
        return f"the kernel refused: {os.strerror(code)}" + (f" ({text})" if text else "")

    def _command(self, command: int, *attributes: bytes) -> None:
        self._request(self.family, command, *attributes)

    def _resolve(self, name: str) -> tuple:
        """The family id of ``name`` and its multicast groups {name: id}."""
        self._seq += 1
        body = struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + \
            _attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
        self._sock.send(struct.pack("=IHHII", 16 + len(body), GENL_ID_CTRL, NLM_F_REQUEST,
                                    self._seq, 0) + body)
        data = self._sock.recv(65536)
        length, kind = struct.unpack_from("=IH", data, 0)
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, 16)[0]
            raise KernelPmError(code, f"no generic netlink family {name!r} (the kernel has no "
                                f"MPTCP path manager): {os.strerror(code)}")
        found = _attrs(data[20:length])
        groups = {}
        for group in _attrs(found.get(CTRL_ATTR_MCAST_GROUPS, b"")).values():
            fields = _attrs(group)
            groups[fields[CTRL_ATTR_MCAST_GRP_NAME].rstrip(b"\0").decode()] = \
                struct.unpack("=I", fields[CTRL_ATTR_MCAST_GRP_ID])[0]
        return struct.unpack("=H", found[CTRL_ATTR_FAMILY_ID])[0], groups
