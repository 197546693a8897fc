"""``mptcp-fast proxy --convert --engine kernel``: the two halves of a link-aggregation proxy,
joined by RFC 8803's 0-RTT TCP Convert Protocol over Linux MPTCP sockets.

The client half (``--direction tcp-to-mptcp``) takes a local TCP connection, learns where it
was going (``--front socks5``: RFC 1928 CONNECT; ``--front transparent``: the original
destination of a connection that nftables REDIRECTed, SO_ORIGINAL_DST), opens an MPTCP
connection to the server half (``--to``), with ``--fastopen`` through TCP Fast Open
(TCP_FASTOPEN_CONNECT: once the kernel holds the server half's TFO cookie the Convert message
travels in the SYN), and sends the Convert fixed header with a Connect TLV. TFO is not the
default: Linux 6.18's server side of a TFO-accepted MPTCP connection sends beyond the
client's data-level window once a second subflow is up, and the transfer then crawls on
data-level retransmissions (docs/kernel-behaviour.md). The server half (``--direction mptcp-to-tcp``,
no ``--to``) reads that message (at most 1,020 bytes, within ``--convert-timeout``),
connects to the destination over plain TCP and answers with the Convert fixed header and an
Extended TCP Header TLV (the destination's SYN+ACK options, as far as Linux shows them:
``conversion.synack``), or with an Error TLV and a close (Connection Reset for a refusal, Destination Unreachable with the
ICMP code for an unreachable host or network, Network Failure for a timeout, Not Authorized
outside ``--allow-to``). The client half maps the answer to its SOCKS5 reply (REP 5, 3/4, 1,
2) and, once both ends are up, the bytes are carried by the kernel engine's relay
(``relay.py``: its epoll loops, as any kernel proxy's connection, with the same half-close and
reset, reported with where it went).

What a half decides (the server half's verdict on a message, the Error TLV for a failed connect,
the SOCKS5 reply for an Error TLV) is ``conversion.py``'s, which the userspace engine's halves
(``convert_aio.py``) share.

Domain names (SOCKS5 ATYP 3) are resolved by the client half: the Connect TLV carries an
address (RFC 8803 has no name in it). A conversation blocks (with a timeout) for an RTT or
more, so it does not run on a relay loop: the loop that accepts a client hands it to a thread
of its own (``relay._Proxy.accepted``), at most ``--max-conversations`` at once, and that
thread hands the connected pair back to the loops (``relay._Proxy.adopt``) and ends. Nothing
the peer sends is read beyond one Convert message (or the SOCKS5 request), so the
application's bytes after it stay in the kernel for the relay. Stopping shuts down the
sockets of the conversations under way, which ends them at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
import time

from ..errors import ConvertError
from ..wire import convert
from . import conversion, relay, socks5

__all__ = ["run_convert_proxy", "original_destination", "error_for", "socks_reply_for"]

TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)   # linux/tcp.h
FASTOPEN_QUEUE = 256        # the server half's queue of TFO connections not yet accepted
# what both engines' halves decide alike (conversion.py), under the names this module had
MPTCP_KIND, DRAIN_LIMIT = conversion.MPTCP_KIND, conversion.DRAIN_LIMIT
error_for, socks_reply_for = conversion.error_for, conversion.socks_reply_for
original_destination = conversion.original_destination
_is_local, _same_endpoint = conversion.is_local, conversion.same_endpoint
_option_kinds = conversion.option_kinds


def _read_message(sock: socket.socket, deadline: float | None = None) -> convert.Message | None:
    """One Convert message from ``sock`` before ``deadline`` (time.monotonic(); None: the
    socket's timeout per read), read exactly: the bytes after it stay in the socket. None
    when the peer closed first."""
    reader = convert.Reader()
    while True:
        socks5.remaining(sock, deadline)
        data = sock.recv(reader.wanted)
        if not data:
            return None
        message = reader.feed(data)
        if message is not None:
            return message


def _hang_up(sock: socket.socket) -> None:
    """Close after an answer so that the answer arrives: a FIN, after reading (and dropping)
    what the peer still sends, up to DRAIN_LIMIT and one second (closing with unread bytes
    would send a RST, which can destroy the answer before the peer reads it)."""
    deadline = time.monotonic() + 1.0
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < DRAIN_LIMIT:
            socks5.remaining(sock, deadline)
            data = sock.recv(DRAIN_LIMIT)
            if not data:
                break
            drained += len(data)
    sock.close()


class _Conversation:
    """One conversation under way: its thread, and the sockets stop() shuts down to end it
    (a blocked recv, send or connect returns at once)."""
    __slots__ = ("thread", "socks", "counted")

    def __init__(self, client: socket.socket, counted: bool) -> None:
        self.thread: threading.Thread | None = None
        self.socks = [client]
        self.counted = counted          # among --max-conversations (else: answered "too many")


class _ConvertProxy(relay._Proxy):
    """The kernel engine's proxy (relay._Proxy: its listener and loops) with a conversation
    before the relay, on a thread of its own for each connection."""

    takes_clients = True

    def __init__(self, args, **helpers) -> None:
        host_port = helpers["host_port"]
        helpers["host_port"] = lambda text: host_port(text) if text else ("", 0)
        super().__init__(args, **helpers)
        self.server_half = args.direction == "mptcp-to-tcp"
        self.timeout = args.convert_timeout
        self.users = socks5.load_users(args.socks_users) if args.socks_auth == "password" \
            else None
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in args.allow_to or ()]
        self.conversations = 0              # counted ones under way now (each a thread)
        self.refusals = 0                   # "too many" answers under way (each a thread)
        self.under_way: set[_Conversation] = set()
        self.conversations_lock = threading.Lock()
        self._here = threading.local()      # .conversation: this thread's

    @staticmethod
    def _resolve(host: str, port: int, family: int) -> tuple:
        """The server half has no --to (each Connect TLV says where); the client half opens
        its MPTCP connections itself (blocking, on the conversation's thread)."""
        return (host, port)

    # ------------------------------------------------------------------ sockets
    def _listener(self) -> socket.socket:
        sock = super()._listener()
        if self.args.front == "transparent":        # tproxy too, not only redirect
            conversion.make_transparent(sock)
        if self.server_half and self.args.fastopen:
            with contextlib.suppress(OSError):      # a kernel without TFO on MPTCP
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, FASTOPEN_QUEUE)
        return sock

    def _hold(self, sock: socket.socket) -> None:
        """``sock`` belongs to this thread's conversation: stop() shuts it down too."""
        self._here.conversation.socks.append(sock)
        if self.stopping:                           # (stop() may have looked already)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _carry(self, client: socket.socket, upstream: socket.socket, peer,
               destination: str) -> None:
        """Both ends up: hand them to the relay's loops, which carry, report and close."""
        self.adopt(client, upstream, peer, destination=destination)

    def _say(self, peer, destination: str, why: str) -> None:
        print(f"mptcp-fast proxy: {self.endpoint(peer)}: refused, {destination}: {why}",
              file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ conversations
    def accepted(self, client: socket.socket, peer) -> bool:
        """On a relay loop: start the client's conversation on a thread of its own. Beyond
        --max-conversations the answer ("too many") also needs a thread (it waits for the
        peer to read it), at most as many again; beyond that the client is reset at once."""
        limit = self.args.max_conversations
        with self.conversations_lock:
            counted = self.conversations < limit
            answered = counted or self.refusals < limit
            if counted:
                self.conversations += 1
            elif answered:
                self.refusals += 1
            conversation = _Conversation(client, counted)
            if answered:
                self.under_way.add(conversation)
        if not answered:
            self._say(peer, "?", f"{limit} conversations under way and as many answers "
                      "(--max-conversations)")
            relay.reset(client)
            return True
        conversation.thread = threading.Thread(target=self._converse, args=(conversation, peer),
                                               name="convert-conversation", daemon=True)
        try:
            conversation.thread.start()
        except RuntimeError as exc:                 # no more threads
            self._over(conversation)
            self._say(peer, "?", str(exc))
            relay.reset(client)
        return True

    def _converse(self, conversation: _Conversation, peer) -> None:
        """A conversation's thread: from the accepted client to the pair handed to the
        loops (adopt), or to a refusal."""
        client = conversation.socks[0]
        self._here.conversation = conversation
        try:
            client.settimeout(self.timeout)         # (the loop made it non-blocking)
            if not conversation.counted:
                self._too_many(client, peer)
            elif self.server_half:
                self._server_half(client, peer)
            else:
                self._client_half(client, peer)
        except OSError:                             # the client went, or stop() shut it
            relay.reset(client)
        except BaseException:
            relay.reset(client)
            raise
        finally:
            self._here.conversation = None
            self._over(conversation)

    def _over(self, conversation: _Conversation) -> None:
        with self.conversations_lock:
            self.under_way.discard(conversation)
            if conversation.counted:
                self.conversations -= 1
            else:
                self.refusals -= 1

    def stop(self) -> None:
        """The relay's stop (its loops reset what they carry; adopt() resets what comes
        later), then the conversations under way: their sockets shut down, each ends at
        once (one blocked in a name lookup is waited for, two seconds at most)."""
        super().stop()
        with self.conversations_lock:
            under_way = list(self.under_way)
        for conversation in under_way:
            for sock in list(conversation.socks):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        end = time.monotonic() + 2.0
        for conversation in under_way:
            if conversation.thread is not None:
                conversation.thread.join(max(0.0, end - time.monotonic()))

    def _too_many(self, client: socket.socket, peer) -> None:
        """More than --max-conversations at once: answered at once, without reading what the
        client says (Resource Exceeded on the server half, a SOCKS5 general failure or a reset
        on the client half)."""
        why = f"{self.args.max_conversations} conversations under way (--max-conversations)"
        if self.server_half:
            self._answer_error(client, peer, "?", convert.Error(convert.RESOURCE_EXCEEDED), why)
        elif self.args.front == "socks5":
            self._say(peer, "?", why)
            client.close()                  # (no reply: RFC 1928 answers a request, not a hello)
        else:
            self._refuse(client, peer, "?", socks5.GENERAL_FAILURE, why)

    # ------------------------------------------------------------------ the server half
    def _server_half(self, client: socket.socket, peer) -> None:
        try:
            message = _read_message(client, time.monotonic() + self.timeout)
        except ConvertError as exc:
            self._answer_error(client, peer, "?", conversion.bad_message_error(exc), str(exc))
            return
        except OSError as exc:
            self._say(peer, "?", f"no Convert message: {self.error_text(exc) or 'timeout'}")
            client.close()
            return
        if message is None:
            client.close()
            return
        verdict = conversion.judge(message, listen_port=self.listen_port,
                                   allowed=self.allowed, is_self=_is_local,
                                   endpoint=self.endpoint)
        if verdict.error is not None:
            self._answer_error(client, peer, verdict.where, verdict.error, verdict.why)
            return
        if verdict.answer is not None:              # (an Info TLV's answer)
            client.sendall(verdict.answer)
            _hang_up(client)
            return
        target = verdict.target
        assert target is not None
        where = verdict.where
        try:
            upstream = self._connect_to(target.address, target.port)
        except OSError as exc:
            self._answer_error(client, peer, where, error_for(exc),
                               self.error_text(exc) or "timeout")
            return
        try:        # the answer: the destination's SYN+ACK options (RFC 8803 §4.2)
            client.sendall(conversion.connected_answer(upstream))
        except OSError:
            upstream.close()
            raise
        self._carry(client, upstream, peer, where)

    def _answer_error(self, client: socket.socket, peer, where: str, error: convert.Error,
                      why: str) -> None:
        self._say(peer, where, f"{why} (Convert error {error.code}, {error.name})")
        with contextlib.suppress(OSError):
            client.sendall(convert.encode([error]))
        _hang_up(client)

    # ------------------------------------------------------------------ the client half
    def _client_half(self, client: socket.socket, peer) -> None:
        socks = self.args.front == "socks5"
        if socks:
            try:
                request = socks5.negotiate(client, self.users, time.monotonic() + self.timeout)
            except (socks5.SocksError, OSError) as exc:
                self._say(peer, "?", f"SOCKS5: {self.error_text(exc) or 'timeout'}")
                client.close()
                return
            host, port = request.host, request.port
        else:
            try:
                host, port = original_destination(client)
            except OSError as exc:              # no conntrack entry: not redirected here
                self._say(peer, "?", f"no original destination ({self.error_text(exc)}): "
                          "was it redirected here?")
                client.close()
                return
            if conversion.made_straight_here((host, port), client.getsockname()):
                self._say(peer, self.endpoint((host, port)), "not redirected to this proxy "
                          "(a direct connection would loop)")
                client.close()
                return
        where = self.endpoint((host, port))
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            address = ipaddress.ip_address(infos[0][4][0])
        except (OSError, IndexError, ValueError) as exc:
            self._refuse(client, peer, where, socks5.HOST_UNREACHABLE,
                         f"cannot resolve: {self.error_text(exc)}")
            return
        try:
            mptcp = self._open_converter(convert.encode([convert.Connect(address, port)]))
        except OSError as exc:
            self._refuse(client, peer, where, socks5.GENERAL_FAILURE,
                         f"server half {self.to_host}:{self.to_port}: "
                         f"{self.error_text(exc) or 'timeout'}")
            return
        try:
            answer = _read_message(mptcp, time.monotonic() + self.timeout)
        except (ConvertError, OSError) as exc:
            mptcp.close()
            self._refuse(client, peer, where, socks5.GENERAL_FAILURE,
                         f"server half's answer: {self.error_text(exc) or 'timeout'}")
            return
        refusal = conversion.refusal_for_answer(answer)
        if refusal is not None:
            mptcp.close()
            self._refuse(client, peer, where, *refusal)
            return
        if socks:
            try:
                socks5.reply(client, socks5.SUCCEEDED, mptcp.getsockname())
            except OSError:
                mptcp.close()
                raise
        self._carry(client, mptcp, peer, where)

    def _refuse(self, client: socket.socket, peer, where: str, code: int, why: str) -> None:
        self._say(peer, where, f"{why} (SOCKS5 REP {code})" if self.args.front == "socks5"
                  else why)
        if self.args.front == "socks5":
            with contextlib.suppress(OSError):
                socks5.reply(client, code)
            client.close()
        else:           # transparent: the application sees a reset, as from a refusal
            relay.reset(client)

    def _connect_to(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                    port: int) -> socket.socket:
        """The server half's plain TCP connection to the destination, within the timeout
        (held by the conversation: stop() aborts the connect)."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._hold(sock)
            sock.settimeout(self.timeout)
            sock.connect((str(address), port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _open_converter(self, first: bytes) -> socket.socket:
        """An MPTCP connection to the server half whose first bytes are ``first``: with
        TCP_FASTOPEN_CONNECT (--fastopen) connect() returns at once and the write
        sends the SYN, carrying ``first`` when the kernel holds a TFO cookie for the server
        half (the first connection fetches it; the kernel then sends the bytes after the
        handshake)."""
        host, port = self.to_host, self.to_port
        sock = self._mptcp_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self._hold(sock)
            sock.settimeout(self.timeout)
            if self.args.fastopen:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
            if self.args.address:
                sock.bind((self.args.address[0], 0))
            sock.connect((host, port))
            sock.sendall(first)
        except BaseException:
            sock.close()
            raise
        return sock


def run_convert_proxy(args, **helpers) -> int:
    """The two halves (see the module text); ``helpers`` as relay.run_proxy takes them."""
    return _ConvertProxy(args, **helpers).serve()
