"""What the Convert server half's answer says of the destination's SYN+ACK
(``conversion.synack``: TCP_INFO, and the MSS option read in repair mode), on a real
connection between two network namespaces this module makes (and deletes): A connects to a
listener in D, whose sysctls decide the SYN+ACK's options and whose route announces an MSS of
1300 where the path's MTU (1280) gives 1240. Checked against what D's own socket says of the
options it sent; without CAP_NET_ADMIN (setpriv drops it) the MSS is the one A sends with.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys

import pytest

import mptcp_fast
from mptcp_fast.cli import conversion
from mptcp_fast.net.netns import veth_pair
from mptcp_fast.testing.testbed import kernel_namespace, run_name

pytestmark = [pytest.mark.requires("testbed")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mptcp_fast.__file__)))
LISTEN = ("198.18.42.1", 9000)
DEFAULTS = {"net.ipv4.tcp_sack": 1, "net.ipv4.tcp_window_scaling": 1,
            "net.ipv4.tcp_timestamps": 1}
VARIANTS = {
    "defaults": {},
    "no-sack": {"net.ipv4.tcp_sack": 0},
    "no-window-scaling": {"net.ipv4.tcp_window_scaling": 0},
    "no-timestamps": {"net.ipv4.tcp_timestamps": 0},
}
# the same read in a process without CAP_NET_ADMIN, which repair mode needs
UNPRIVILEGED = """
import dataclasses, json, socket, sys
from mptcp_fast.cli import conversion
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
seen = conversion.synack(sock)
sock.sendall(b"ping")
print(json.dumps({**dataclasses.asdict(seen), "options": conversion.synack_options(sock).hex(),
                  "echo": sock.recv(4).decode()}))
"""


@pytest.fixture(scope="module")
def pair():
    a, d = kernel_namespace("csA"), kernel_namespace("csD")
    try:
        veth_pair(a, run_name("csa"), d, run_name("csd"))
        a.ip("link", "set", run_name("csa"), "mtu", "1280")
        d.ip("link", "set", run_name("csd"), "mtu", "1280")
        a.ip("addr", "add", "198.18.42.2/24", "dev", run_name("csa"))
        d.ip("addr", "add", "198.18.42.1/24", "dev", run_name("csd"))
        d.ip("route", "change", "198.18.42.0/24", "dev", run_name("csd"), "advmss", "1300")
        d.sysctl("net.ipv4.tcp_rmem", "4096 131072 1048576")     # a shift below A's
        yield a, d
    finally:
        a.delete()
        d.delete()


def _own_shift(sock) -> int:
    """The Window Scale shift ``sock`` announced itself (tcpi_rcv_wscale)."""
    scales = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)[6]
    return scales >> 4 if sys.byteorder == "little" else scales & 0x0F


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_synack_says_what_the_destination_sent(pair, variant):
    """Each of D's sysctls turned off takes its option out of what A's socket says; the MSS
    option is D's 1300 (read in repair mode), not the 1228 or 1240 A sends with; the Window
    Scale shift is the one D's socket announced, not A's; the connection carries bytes both
    ways after the read."""
    a, d = pair
    sysctls = {**DEFAULTS, **VARIANTS[variant]}
    for key, value in sysctls.items():
        d.sysctl(key, value)
    with d.entered():
        listener = socket.create_server(LISTEN)
    with listener:
        with a.entered():
            sock = socket.create_connection(LISTEN, timeout=10)
        accepted, _ = listener.accept()
    with sock, accepted:
        seen = conversion.synack(sock)
        options = conversion.synack_options(sock)
        sock.sendall(b"ping")
        assert accepted.recv(4) == b"ping"
        accepted.sendall(b"pong")
        assert sock.recv(4) == b"pong"
        d_shift, a_shift = _own_shift(accepted), _own_shift(sock)
        snd_mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    assert seen is not None
    assert seen.mss == 1300 and seen.mss_exact and snd_mss < 1300
    assert seen.sack == bool(sysctls["net.ipv4.tcp_sack"])
    assert seen.timestamps == bool(sysctls["net.ipv4.tcp_timestamps"])
    if sysctls["net.ipv4.tcp_window_scaling"]:
        assert seen.window_scale == d_shift != a_shift
    else:
        assert seen.window_scale is None
    # the option area: whole words, MSS first, kinds as seen, no Timestamps (kind 8)
    assert len(options) % 4 == 0 and options[:4] == struct.pack("!BBH", 2, 4, 1300)
    assert conversion.option_kinds(options) == \
        [2] + [4] * seen.sack + [3] * (seen.window_scale is not None)


@pytest.mark.requires("setpriv")
def test_without_cap_net_admin_the_mss_is_the_one_sent_with(pair):
    """In a process without CAP_NET_ADMIN repair mode is refused: the MSS is what A's socket
    sends with, the Timestamps option's 12 bytes added back (1240: the path's, below D's
    1300), said to be inexact; the rest as with it, and the connection unharmed."""
    a, d = pair
    for key, value in DEFAULTS.items():
        d.sysctl(key, value)
    with d.entered():
        listener = socket.create_server(LISTEN)
    with listener:
        child = a.popen(["setpriv", "--bounding-set=-net_admin", sys.executable, "-c",
                         UNPRIVILEGED, LISTEN[0], str(LISTEN[1])],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)
        listener.settimeout(10)
        try:
            accepted, _ = listener.accept()
            with accepted:
                accepted.settimeout(10)
                assert accepted.recv(4) == b"ping"
                accepted.sendall(b"pong")
                out, err = child.communicate(timeout=10)
        finally:
            child.kill()
    assert child.returncode == 0, err
    seen = json.loads(out)
    assert seen["mss"] == 1240 and not seen["mss_exact"], seen
    assert seen["sack"] and seen["timestamps"] and seen["window_scale"] is not None
    assert seen["options"].startswith("020404d8") and seen["echo"] == "pong"
