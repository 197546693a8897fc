"""Network namespaces for interop tests and benchmarks: a kernel MPTCP peer in a
namespace of its own, reached through veth pairs or a TUN device, with its ``MPTcpExt``
counters read before and after. Root only; iproute2's ``ip`` and ``nstat`` do the work.

    with Namespace.create("mft-k") as ns:          # deleted again on leaving
        ns.sysctl("net.mptcp.enabled", 1)
        ns.ip("mptcp", "limits", "set", "subflows", "4", "add_addr_accepted", "4")
        before = ns.counters()                      # {"MPTcpExtMPCapableSYNRX": 0, ...}
        with ns.entered():                          # this thread's sockets live in the namespace
            sock = kernel.mptcp_socket()
        ...
        ns.counters_since(before)                   # what moved

Only the benchmarking ranges (198.18.0.0/15, 2001:2::/48, RFC 2544/5180) belong in here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
import threading

from ..errors import MptcpError

__all__ = ["Namespace", "NamespaceError", "veth_pair", "have_root"]

CLONE_NEWNET = 0x40000000


class NamespaceError(MptcpError):
    """A namespace command failed; the message holds the command and what it printed."""


def have_root() -> bool:
    """Can this process make namespaces and TUN devices (root, /dev/net/tun, ``ip``)?"""
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun") and \
        subprocess.run(["sh", "-c", "command -v ip nstat"], capture_output=True).returncode == 0


def _run(command, check: bool = True) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise NamespaceError(f"{command[0]!r} is not installed (iproute2)") from None
    if check and done.returncode:
        raise NamespaceError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise NamespaceError(f"setns: {os.strerror(error)}")


class Namespace:
    """One named network namespace (``ip netns``)."""

    def __init__(self, name: str):
        self.name = name

    @classmethod
    def create(cls, name: str) -> "Namespace":
        """A fresh namespace (one left over by a crashed run of the same name is replaced),
        with loopback up."""
        _run(["ip", "netns", "del", name], check=False)
        _run(["ip", "netns", "add", name])
        ns = cls(name)
        ns.ip("link", "set", "lo", "up")
        return ns

    def delete(self) -> None:
        _run(["ip", "netns", "del", self.name], check=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.delete()

    # ------------------------------------------------------------------ commands inside
    def ip(self, *arguments) -> str:
        return _run(["ip", "-n", self.name, *map(str, arguments)])

    def run(self, *command, check: bool = True) -> str:
        return _run(["ip", "netns", "exec", self.name, *map(str, command)], check=check)

    def popen(self, command, **kwargs) -> subprocess.Popen:
        """A process inside the namespace (``ip netns exec``)."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, command)], **kwargs)

    def sysctl(self, key: str, value) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    @contextlib.contextmanager
    def entered(self):
        """This thread inside the namespace: sockets and TUN devices made here belong to it
        and stay there when the thread comes back out."""
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    # ------------------------------------------------------------------ the kernel's counters
    def counters(self, prefix: str = "MPTcpExt") -> dict:
        """The namespace's SNMP counters whose names start with ``prefix``, absolute values
        (``nstat -asz``: not the deltas nstat keeps history for)."""
        out = self.run("nstat", "-asz")
        found = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith(prefix) and parts[1].isdigit():
                found[parts[0]] = int(parts[1])
        return found

    def counters_since(self, before: dict, prefix: str = "MPTcpExt") -> dict:
        """Counters that moved since ``before``, by how much."""
        now = self.counters(prefix)
        return {name: value - before.get(name, 0) for name, value in now.items()
                if value != before.get(name, 0)}


def veth_pair(a: Namespace, a_name: str, b: Namespace, b_name: str) -> None:
    """A veth pair from namespace ``a`` (``a_name``) to ``b`` (``b_name``), both up."""
    _run(["ip", "link", "add", a_name, "netns", a.name, "type", "veth", "peer", "name", b_name,
          "netns", b.name])
    a.ip("link", "set", a_name, "up")
    b.ip("link", "set", b_name, "up")
