"""``mptcp-fast proxy --convert --engine userspace``: the two halves of the Convert proxy
(RFC 8803) on asyncio streams, the MPTCP side on the userspace engine (``aio.Stack`` on a
TUN device), as ``convert_proxy.py`` runs them on the kernel engine's sockets and threads.

The server half (``--direction mptcp-to-tcp``) reads the Convert message at the start of each
MPTCP connection the engine accepts (within ``--convert-timeout``), asks ``conversion.judge``
what to do with it, connects over plain TCP (asyncio: a kernel TCP socket) and answers with
the Convert fixed header and the Extended TCP Header TLV that socket's SYN+ACK gives
(``conversion.connected_answer``, as the kernel engine's half), or with the Error TLV the
kernel engine's half gives, and a close. The client half
(``--direction tcp-to-mptcp``) learns the destination from its front (``--front socks5``:
``socks5.negotiate_stream``; ``--front transparent``: SO_ORIGINAL_DST), opens an MPTCP
connection to ``--to`` through the engine, sends the Connect TLV and maps the answer to its
SOCKS5 reply (``conversion.refusal_for_answer``). Both give the proxy (net.py's ``_proxy``)
the two connected streams and the destination; it carries and reports them as every
userspace proxy connection. A conversation is a task, not a thread: at most
``--max-conversations`` run at once, beyond which a client is answered at once (Resource
Exceeded on the server half). Whatever a peer sends, a conversation ends in an answer or a
close, never in an exception out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import sys
import time

from ..errors import ConvertError, MptcpError
from ..wire import convert
from . import conversion, socks5
from .net import _abort as abort

__all__ = ["Halves"]

HANG_UP_SECONDS = 1.0       # how long an answered peer may take to read the answer and close


async def read_message(reader: asyncio.StreamReader) -> convert.Message | None:
    """One Convert message from ``reader``, read exactly: the bytes after it stay in the
    reader. None when the peer closed first; ConvertError for a malformed message."""
    parser = convert.Reader()
    while True:
        try:
            data = await reader.readexactly(parser.wanted)
        except asyncio.IncompleteReadError:
            return None
        message = parser.feed(data)
        if message is not None:
            return message


async def hang_up(reader, writer) -> None:
    """Close after an answer so that the answer arrives: the end of stream, then what the
    peer still sends read and dropped (up to conversion.DRAIN_LIMIT and HANG_UP_SECONDS),
    then the close; a peer that does not let go is reset."""
    async def drain() -> None:
        drained = 0
        while drained < conversion.DRAIN_LIMIT:
            data = await reader.read(conversion.DRAIN_LIMIT)
            if not data:
                return
            drained += len(data)
    try:
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(drain(), HANG_UP_SECONDS)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), HANG_UP_SECONDS)
    except (OSError, ConnectionError, RuntimeError, asyncio.TimeoutError):
        abort(writer)


class Halves:
    """The conversations of one proxy: ``converse`` turns an accepted connection into the
    pair of connected streams and the destination, or answers and closes it."""

    def __init__(self, args, engine, *, endpoint, error_text, listen_port: int,
                 to: tuple[str, int]) -> None:
        self.args = args
        self.engine = engine
        self.endpoint = endpoint
        self.error_text = error_text
        self.server_half = args.direction == "mptcp-to-tcp"
        self.timeout = args.convert_timeout
        self.users = socks5.load_users(args.socks_users) if args.socks_auth == "password" \
            else None
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in args.allow_to or ()]
        self.listen_port = listen_port
        self.to_host, self.to_port = to          # the server half (the client half's --to)
        # the userspace engine's own addresses are this server half too (a connect to one of
        # them goes through the TUN device into the engine)
        self.own = {ipaddress.ip_address(a) for a in args.address or ()}
        listen = getattr(args, "listen", None) or ""
        with contextlib.suppress(ValueError):       # a worker's public address (balanced.py)
            self.own.add(ipaddress.ip_address(listen.rpartition(":")[0].strip("[]")))
        self.under_way = 0

    def is_self(self, address) -> bool:
        return address in self.own or conversion.is_local(address)

    def say(self, peer, where: str, why: str) -> None:
        print(f"mptcp-fast proxy: {self.endpoint(peer)}: refused, {where}: {why}",
              file=sys.stderr, flush=True)

    def listener(self, host: str, port: int) -> socket.socket:
        """The client half's plain TCP listener, as the kernel engine's: a dual-stack one for
        an IPv6 host (``[::]:PORT`` takes both families, as a transparent front needs)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.args.front == "transparent":    # tproxy too, not only redirect
                conversion.make_transparent(sock)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise MptcpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    async def converse(self, reader, writer):
        """(the other side's reader, its writer, the destination as text), or None once the
        client was answered (and closed) without a connection."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self.under_way >= self.args.max_conversations:
            await self._too_many(reader, writer, peer)
            return None
        self.under_way += 1
        try:
            if self.server_half:
                return await self._server_half(reader, writer, peer)
            return await self._client_half(reader, writer, peer)
        except (OSError, ConnectionError, RuntimeError):    # the client went
            abort(writer)
            return None
        finally:
            self.under_way -= 1

    async def _too_many(self, reader, writer, peer) -> None:
        why = f"{self.args.max_conversations} conversations under way (--max-conversations)"
        if self.server_half:
            await self._answer_error(reader, writer, peer, "?",
                                     convert.Error(convert.RESOURCE_EXCEEDED), why)
        elif self.args.front == "socks5":
            self.say(peer, "?", why)
            writer.close()          # (no reply: RFC 1928 answers a request, not a hello)
        else:
            self.say(peer, "?", why)
            abort(writer)

    # ------------------------------------------------------------------ the server half
    async def _server_half(self, reader, writer, peer):
        try:
            message = await asyncio.wait_for(read_message(reader), self.timeout)
        except ConvertError as exc:
            await self._answer_error(reader, writer, peer, "?",
                                     conversion.bad_message_error(exc), str(exc))
            return None
        except asyncio.TimeoutError:
            self.say(peer, "?", "no Convert message: timeout")
            writer.close()
            return None
        if message is None:
            writer.close()
            return None
        verdict = conversion.judge(message, listen_port=self.listen_port,
                                   allowed=self.allowed, is_self=self.is_self,
                                   endpoint=self.endpoint)
        if verdict.error is not None:
            await self._answer_error(reader, writer, peer, verdict.where, verdict.error,
                                     verdict.why)
            return None
        if verdict.answer is not None:              # (an Info TLV's answer)
            writer.write(verdict.answer)
            await hang_up(reader, writer)
            return None
        target = verdict.target
        assert target is not None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(str(target.address), target.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            await self._answer_error(reader, writer, peer, verdict.where,
                                     conversion.error_for(exc),
                                     self.error_text(exc) or "timeout")
            return None
        try:        # the answer: the destination's SYN+ACK options (RFC 8803 §4.2)
            writer.write(conversion.connected_answer(up_writer.get_extra_info("socket")))
            await writer.drain()
        except BaseException:
            abort(up_writer)
            raise
        return up_reader, up_writer, verdict.where

    async def _answer_error(self, reader, writer, peer, where: str, error: convert.Error,
                            why: str) -> None:
        self.say(peer, where, f"{why} (Convert error {error.code}, {error.name})")
        with contextlib.suppress(OSError, ConnectionError, RuntimeError):
            writer.write(convert.encode([error]))
        await hang_up(reader, writer)

    # ------------------------------------------------------------------ the client half
    async def _client_half(self, reader, writer, peer):
        deadline = time.monotonic() + self.timeout
        socks = self.args.front == "socks5"
        if socks:
            try:
                request = await asyncio.wait_for(
                    socks5.negotiate_stream(reader, writer, self.users), self.timeout)
            except (socks5.SocksError, OSError, asyncio.TimeoutError) as exc:
                self.say(peer, "?", f"SOCKS5: {self.error_text(exc) or 'timeout'}")
                writer.close()
                return None
            host, port = request.host, request.port
        else:
            sock = writer.get_extra_info("socket")
            try:
                host, port = conversion.original_destination(sock)
            except OSError as exc:              # no conntrack entry: not redirected here
                self.say(peer, "?", f"no original destination ({self.error_text(exc)}): "
                         "was it redirected here?")
                writer.close()
                return None
            if conversion.made_straight_here((host, port), sock.getsockname()):
                self.say(peer, self.endpoint((host, port)), "not redirected to this proxy "
                         "(a direct connection would loop)")
                writer.close()
                return None
        where = self.endpoint((host, port))
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM), max(0.0, deadline - time.monotonic()))
            address = ipaddress.ip_address(infos[0][4][0])
        except (OSError, IndexError, ValueError, asyncio.TimeoutError) as exc:
            await self._refuse(writer, peer, where, socks5.HOST_UNREACHABLE,
                               f"cannot resolve: {self.error_text(exc) or 'timeout'}")
            return None
        # RFC 8803 sends the Convert message in the SYN (TCP Fast Open): with --fastopen it rides
        # there once the engine holds the server half's TFO cookie (sent first, either way)
        message = convert.encode([convert.Connect(address, port)])
        try:
            mptcp_reader, mptcp_writer = await asyncio.wait_for(
                self.engine.open(self.to_host, self.to_port,
                                 data=message if self.args.fastopen else None), self.timeout)
        except (OSError, MptcpError, asyncio.TimeoutError) as exc:
            await self._refuse(writer, peer, where, socks5.GENERAL_FAILURE,
                               f"server half {self.to_host}:{self.to_port}: "
                               f"{self.error_text(exc) or 'timeout'}")
            return None
        try:
            if not self.args.fastopen:
                mptcp_writer.write(message)
            await mptcp_writer.drain()
            answer = await asyncio.wait_for(read_message(mptcp_reader), self.timeout)
        except (ConvertError, OSError, ConnectionError, RuntimeError,
                asyncio.TimeoutError) as exc:
            abort(mptcp_writer)
            await self._refuse(writer, peer, where, socks5.GENERAL_FAILURE,
                               f"server half's answer: {self.error_text(exc) or 'timeout'}")
            return None
        refusal = conversion.refusal_for_answer(answer)
        if refusal is not None:
            mptcp_writer.close()
            await self._refuse(writer, peer, where, *refusal)
            return None
        if socks:
            try:
                writer.write(socks5.reply_bytes(socks5.SUCCEEDED, _bound(mptcp_writer)))
                await writer.drain()
            except BaseException:
                abort(mptcp_writer)
                raise
        return mptcp_reader, mptcp_writer, where

    async def _refuse(self, writer, peer, where: str, code: int, why: str) -> None:
        socks = self.args.front == "socks5"
        self.say(peer, where, f"{why} (SOCKS5 REP {code})" if socks else why)
        if socks:
            with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                writer.write(socks5.reply_bytes(code))
                await writer.drain()
            writer.close()
        else:           # transparent: the application sees a reset, as from a refusal
            abort(writer)


def _bound(writer) -> tuple | None:
    """The MPTCP side's local address and port (the SOCKS5 reply's BND), if it says."""
    name = writer.get_extra_info("sockname")
    try:
        ipaddress.ip_address(name[0])
        return name[0], name[1]
    except (TypeError, IndexError, ValueError):
        return None
