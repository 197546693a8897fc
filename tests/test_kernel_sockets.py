"""Kernel MPTCP sockets: made with a clear error where MPTCP is off,
and what MPTCP_INFO, MPTCP_TCPINFO and MPTCP_SUBFLOW_ADDRS say about a real kernel connection
on loopback (one subflow: the in-kernel PM has nothing more to add there)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from mptcp_fast.net import kernel


@pytest.mark.requires("kernel_mptcp")
def test_info_of_a_loopback_connection():
    server = kernel.mptcp_socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
    thread.start()
    client = kernel.mptcp_socket()
    client.connect(("127.0.0.1", port))
    thread.join(5)
    peer = accepted[0]
    client.sendall(b"x" * 100_000)
    got = b""
    while len(got) < 100_000:
        got += peer.recv(65536)
    peer.sendall(b"y" * 1000)
    reply = client.recv(4096)                                    # some of the 1,000 bytes
    assert 0 < len(reply) <= 1000 and reply == b"y" * len(reply)
    info = kernel.mptcp_info(client)
    server_info = kernel.mptcp_info(peer)
    assert not info.fallback and info.remote_key_received
    assert info.token != 0 and server_info.token != 0 and info.token != server_info.token
    # the DSNs: what the client sent is what the server acknowledged and received
    assert info.snd_una == info.write_seq == server_info.rcv_nxt
    if info.bytes_sent is not None:                              # Linux 6.5 and later
        assert info.bytes_sent >= 100_000 and server_info.bytes_received >= 100_000
    addrs = kernel.subflow_addresses(client)
    assert addrs == [(client.getsockname()[:2], ("127.0.0.1", port))]
    (tcp,) = kernel.subflow_tcp_info(client)
    assert tcp.state == 1 and tcp.snd_mss > 0 and tcp.bytes_acked >= 100_000   # ESTABLISHED
    for s in (client, peer, server):
        s.close()


@pytest.mark.requires("kernel_mptcp")
def test_plain_tcp_sockets_have_no_mptcp_info():
    plain = socket.socket()
    with pytest.raises(kernel.KernelMptcpError) as exc:
        kernel.mptcp_info(plain)
    assert isinstance(exc.value, OSError)
    plain.close()


@pytest.mark.requires("root", "iproute2", "kernel_mptcp")
def test_a_clear_error_where_mptcp_is_disabled():
    """In a namespace with net.mptcp.enabled=0 the socket call says so (not a bare errno)."""
    name = f"mf-off-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.mptcp.enabled=0"],
                       check=True)
        out = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c",
                              "from mptcp_fast.net import kernel\n"
                              "try:\n    kernel.mptcp_socket()\n"
                              "except kernel.KernelMptcpError as e:\n    print(e)"],
                             capture_output=True, text=True, check=True).stdout
        assert "net.mptcp.enabled=0" in out
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.requires("root", "iproute2", "kernel_mptcp", "pyroute2")
def test_the_in_kernel_path_manager_over_netlink():
    """Endpoints and limits set through mptcp_fast.net.kernel are what `ip mptcp` shows, in a
    namespace made for the test."""
    name = f"mf-pm-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # an endpoint with a port listens on it: its address must be the namespace's own
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", "198.18.7.3/32", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", name, *command], check=True)
        script = (
            "from mptcp_fast.net import kernel\n"
            "kernel.add_endpoint('198.18.7.1', flags={'signal', 'subflow'}, id=5)\n"
            "kernel.add_endpoint('198.18.7.3', flags={'signal', 'backup'}, port=6000)\n"
            "kernel.add_endpoint('2001:2::7', flags={'subflow'})\n"
            "try:\n    kernel.add_endpoint('198.18.7.2', flags={'subflow'}, port=6000)\n"
            "except kernel.KernelMptcpError as e:\n    print('EINVAL' if e.errno == 22 else e)\n"
            "kernel.set_limits(subflows=4, add_addr_accepted=3)\n"
            "eps = sorted(kernel.endpoints(), key=lambda e: e.id)\n"
            "print([(e.id, e.address, e.port, sorted(e.flags)) for e in eps])\n"
            "print(kernel.limits())\n"
            "kernel.remove_endpoint(5)\n"
            "print(len(kernel.endpoints()))\n"
            "try:\n    kernel.add_endpoint('198.18.7.9', flags={'nonsense'})\n"
            "except ValueError as e:\n    print('refused')\n")
        out = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", script],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert out[0] == "EINVAL"                  # a port only on a signal endpoint
        assert out[1] == "[(5, '198.18.7.1', None, ['signal', 'subflow']), " \
                         "(6, '198.18.7.3', 6000, ['backup', 'signal']), " \
                         "(7, '2001:2::7', None, ['subflow'])]"
        assert out[2] == "(4, 3)" and out[3] == "2" and out[4] == "refused"
        shown = subprocess.run(["ip", "netns", "exec", name, "ip", "mptcp", "limits", "show"],
                               capture_output=True, text=True, check=True).stdout
        assert "subflows 4" in shown and "add_addr_accepted 3" in shown
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
