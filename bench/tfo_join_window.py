"""Linux MPTCP with TCP Fast Open and a second subflow, no code of this project in the data path
(root): does the server of a TFO-accepted connection keep to the client's data-level window?

    python bench/tfo_join_window.py --transfers 8 --size 3M

Two namespaces over two veth pairs (198.18.0.0/24 and 198.18.2.0/24, the second reached by a
``subflow`` endpoint on the client with a route of its own), a kernel MPTCP listener in the
server namespace (``TCP_FASTOPEN`` with ``--fastopen``), a client in the other
(``TCP_FASTOPEN_CONNECT``) that sends 24 bytes, reads the server's 4-byte answer, sends 85
bytes and reads SIZE bytes, as the Convert proxy's halves do. Prints, for each setting (TFO or
not, one subflow or two), how many transfers completed within their timeout and how much the
client's MPTcpExtNoDSSInWindow (data it dropped as beyond the window it announced) and the
server's MPTcpExtMPTCPRetrans (data-level retransmissions) moved. docs/kernel-behaviour.md §9
has what Linux 6.18 did.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mptcp_fast.cli.main import _size as size_type  # noqa: E402
from mptcp_fast.net.netns import veth_pair  # noqa: E402
from mptcp_fast.testing.testbed import kernel_namespace, run_name  # noqa: E402

TCP_FASTOPEN_CONNECT = 30
PORT = 5100


def _transfers(client_ns, server_ns, fastopen: bool, count: int, size: int, slow: bool,
               port: int):
    payload = os.urandom(size)
    with server_ns.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("198.18.0.1", port))
    listener.listen(16)
    if fastopen:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)

    def serve():
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            with peer:
                peer.recv(24)
                peer.sendall(b"\x01\x01\x00\x00")
                peer.recv(85)
                peer.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()
    complete = 0
    try:
        for _ in range(count):
            with client_ns.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
            with sock:
                sock.settimeout(4)
                if fastopen:
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
                sock.connect(("198.18.0.1", port))
                sock.sendall(b"c" * 24)
                sock.recv(4)
                sock.sendall(b"g" * 85)
                got = 0
                try:
                    while data := sock.recv(16384 if slow else 1 << 20):
                        got += len(data)
                except socket.timeout:
                    pass
                complete += got == size
    finally:
        listener.close()
    return complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=8, help="transfers per setting")
    parser.add_argument("--size", type=size_type, default="3M", help="bytes per transfer")
    parser.add_argument("--slow", action="store_true", help="read 16 KiB at a time")
    args = parser.parse_args()
    client = kernel_namespace("mtfc")
    server = kernel_namespace("mtfs")
    try:
        server.sysctl("net.ipv4.tcp_fastopen", 3)
        for i in (0, 2):
            veth_pair(client, run_name("mtc", str(i)), server, run_name("mts", str(i)))
            client.ip("addr", "add", f"198.18.{i}.2/24", "dev", run_name("mtc", str(i)))
            server.ip("addr", "add", f"198.18.{i}.1/24", "dev", run_name("mts", str(i)))
        client.ip("rule", "add", "from", "198.18.2.2", "table", "100")
        client.ip("route", "add", "default", "dev", run_name("mtc", "2"), "src", "198.18.2.2",
                  "table", "100")
        for subflows in (1, 2):
            if subflows == 2:
                client.ip("mptcp", "endpoint", "add", "198.18.2.2", "dev", run_name("mtc", "2"),
                          "subflow")
            for fastopen in (False, True):
                before_c, before_s = client.counters(), server.counters()
                port = PORT + 2 * subflows + fastopen        # (a listener per setting)
                complete = _transfers(client, server, fastopen, args.transfers, args.size,
                                      args.slow, port)
                dropped = client.counters_since(before_c).get("MPTcpExtNoDSSInWindow", 0)
                resent = server.counters_since(before_s).get("MPTcpExtMPTCPRetrans", 0)
                print(f"{'TFO' if fastopen else 'no TFO':6} {subflows} subflow(s): "
                      f"{complete} of {args.transfers} complete, client NoDSSInWindow "
                      f"+{dropped}, server MPTCPRetrans +{resent}", flush=True)
    finally:
        client.delete()
        server.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
