"""The SOCKS5 front end (mptcp_fast.cli.socks5) over a socket pair, the Convert proxy's
mappings (errno -> Convert Error TLV -> SOCKS5 REP), and the proxy options it refuses before
opening anything. No root needed."""

from __future__ import annotations

import errno
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_fast.cli import convert_proxy, main as cli, socks5
from mptcp_fast.wire import convert


def _talk(sent: bytes, users=None):
    """negotiate() on one end of a socket pair fed ``sent`` (then EOF): (its result or
    exception, every byte it answered)."""
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    theirs.sendall(sent)
    theirs.shutdown(socket.SHUT_WR)
    try:
        try:
            outcome = socks5.negotiate(ours, users)
        except (socks5.SocksError, OSError) as exc:
            outcome = exc
        ours.shutdown(socket.SHUT_WR)
        answer = b""
        while data := theirs.recv(4096):
            answer += data
    finally:
        ours.close()
        theirs.close()
    return outcome, answer


def _talk_stream(sent: bytes, users=None):
    """_talk with negotiate_stream() on asyncio streams (the userspace engine's client half)."""
    import asyncio

    async def run():
        ours, theirs = socket.socketpair()
        theirs.sendall(sent)
        theirs.shutdown(socket.SHUT_WR)
        reader, writer = await asyncio.open_connection(sock=ours)
        try:
            try:
                outcome = await asyncio.wait_for(socks5.negotiate_stream(reader, writer, users),
                                                 2)
            except (socks5.SocksError, OSError) as exc:
                outcome = exc
            writer.close()
            await writer.wait_closed()
            theirs.settimeout(2)
            answer = b""
            while data := theirs.recv(4096):
                answer += data
        finally:
            theirs.close()
        return outcome, answer
    return asyncio.run(run())


# each conversation through both drivers of the one parser: a blocking socket (the kernel
# engine's halves) and asyncio streams (the userspace engine's)
both = pytest.mark.parametrize("talk", [_talk, _talk_stream], ids=["socket", "stream"])


@both
def test_a_connect_to_a_domain_name_without_authentication(talk):
    outcome, answer = talk(b"\x05\x01\x00" + b"\x05\x01\x00\x03\x08web.test\x1f\x40")
    assert outcome == socks5.Request("domain", "web.test", 8000)
    assert answer == b"\x05\x00"


@pytest.mark.parametrize("atyp, raw, host", [
    (1, bytes((198, 18, 4, 1)), "198.18.4.1"),
    (4, bytes.fromhex("20010002000000040000000000000001"), "2001:2:0:4::1"),
])
@both
def test_ipv4_and_ipv6_addresses(atyp, raw, host, talk):
    outcome, _ = talk(b"\x05\x02\x02\x00" + bytes((5, 1, 0, atyp)) + raw + b"\x00\x50")
    assert outcome == socks5.Request("ipv4" if atyp == 1 else "ipv6", host, 80)


@both
def test_username_and_password_accepted_and_refused(talk):
    users = {"alice": "s3cret"}
    hello = b"\x05\x02\x00\x02"
    good = b"\x01\x05alice\x06s3cret"
    request = b"\x05\x01\x00\x01\xc6\x12\x04\x01\x00\x50"
    outcome, answer = talk(hello + good + request, users)
    assert outcome == socks5.Request("ipv4", "198.18.4.1", 80)
    assert answer == b"\x05\x02" + b"\x01\x00"
    outcome, answer = talk(hello + b"\x01\x05alice\x05wrong" + request, users)
    assert isinstance(outcome, socks5.SocksError) and answer == b"\x05\x02" + b"\x01\x01"
    outcome, answer = talk(b"\x05\x01\x00" + request, users)      # no-auth only: refused
    assert isinstance(outcome, socks5.SocksError) and answer == b"\x05\xff"


@pytest.mark.parametrize("request_bytes, rep", [
    (b"\x05\x02\x00\x01\xc6\x12\x04\x01\x00\x50", socks5.COMMAND_NOT_SUPPORTED),     # BIND
    (b"\x05\x03\x00\x01\xc6\x12\x04\x01\x00\x50", socks5.COMMAND_NOT_SUPPORTED),     # UDP
    (b"\x05\x01\x00\x05\x00\x00", socks5.ADDRESS_TYPE_NOT_SUPPORTED),
    (b"\x05\x01\x00\x03\x03a b\x00\x50", socks5.HOST_UNREACHABLE),                   # not a name
])
@both
def test_requests_refused_with_the_right_reply(request_bytes, rep, talk):
    outcome, answer = talk(b"\x05\x01\x00" + request_bytes)
    assert isinstance(outcome, socks5.SocksError) and outcome.replied
    assert answer[2:4] == bytes((5, rep))


@both
@given(data=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_socks_errors(data, talk):
    outcome, _ = talk(data)
    assert isinstance(outcome, (socks5.Request, socks5.SocksError, OSError))


def test_the_users_file(tmp_path):
    path = tmp_path / "users"
    path.write_text("# who may\nalice:s3cret\n\nbob:pa:ss\n")
    assert socks5.load_users(str(path)) == {"alice": "s3cret", "bob": "pa:ss"}
    path.write_text("nobody\n")
    with pytest.raises(socks5.MptcpError):
        socks5.load_users(str(path))


# ---------------------------------------------------------------------- the mappings
@pytest.mark.parametrize("exc, error, rep", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), convert.Error(96),
     socks5.CONNECTION_REFUSED),
    (OSError(errno.EHOSTUNREACH, "no route"), convert.Error(97, b"\x01"),
     socks5.HOST_UNREACHABLE),
    (OSError(errno.ENETUNREACH, "unreachable"), convert.Error(97, b"\x00"),
     socks5.NETWORK_UNREACHABLE),
    (socket.timeout("timed out"), convert.Error(65), socks5.GENERAL_FAILURE),
])
def test_a_failed_connect_becomes_an_error_tlv_then_a_socks_reply(exc, error, rep):
    assert convert_proxy.error_for(exc) == error
    assert convert_proxy.socks_reply_for(error) == rep


def test_not_authorized_is_not_allowed_by_ruleset():
    assert convert_proxy.socks_reply_for(convert.Error(32)) == socks5.NOT_ALLOWED


def test_option_kinds_of_a_connect_tlv():
    assert convert_proxy._option_kinds(bytes.fromhex("0101020405b4" "0402" "0000")) == [2, 4]
    assert convert_proxy._option_kinds(b"\x08\x00\x00\x00") == [8]      # a bad length ends it


# ---------------------------------------------------------------------- the command line
@pytest.mark.parametrize("argv, says", [
    (["--front", "socks5", "--listen", "1080", "--to", "198.18.0.1:5000", "--engine",
      "kernel"], "--convert"),
    (["--convert", "--direction", "mptcp-to-tcp", "--listen", "5000", "--engine", "kernel",
      "--uvloop"], "--uvloop"),
    (["--convert", "--direction", "mptcp-to-tcp", "--listen", "5000", "--to",
      "198.18.4.1:80", "--engine", "kernel"], "no --to"),
    (["--front", "socks5", "--convert", "--listen", "1080", "--engine", "kernel"],
     "SERVER_HALF"),
    (["--front", "socks5", "--convert", "--listen", "1080", "--to", "198.18.0.1:5000",
      "--engine", "kernel", "--socks-auth", "password"], "--socks-users"),
    (["--listen", "1080"], "--to"),
    (["--convert", "--direction", "mptcp-to-tcp", "--listen", "5000", "--engine", "kernel",
      "--max-conversations", "0"], "--max-conversations"),
])
def test_proxy_options_that_mean_nothing_are_refused_in_one_line(argv, says, capsys):
    assert cli.main(["proxy", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_proxys_help_names_every_new_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["proxy", "--help"])
    out = capsys.readouterr().out
    for option in ("--front", "--convert", "--socks-auth", "--socks-users", "--allow-to",
                   "--convert-timeout", "--max-conversations", "--fastopen"):
        assert option in out


def test_a_server_half_conversation_on_a_socket_pair():
    """The server half's reading of one Convert message, exactly: the bytes after it stay."""
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    wire = convert.encode([convert.Connect("198.18.4.1", 80)]) + b"GET /"
    threading.Thread(target=theirs.sendall, args=(wire,)).start()
    message = convert_proxy._read_message(ours)
    assert message is not None and message.first(convert.Connect).port == 80
    assert ours.recv(10) == b"GET /"
    ours.close()
    theirs.close()


def test_an_ipv4_mapped_address_is_the_same_endpoint_as_its_ipv4_address():
    assert convert_proxy._same_endpoint(("127.0.0.1", 1083), ("::ffff:127.0.0.1", 1083, 0, 0))
    assert not convert_proxy._same_endpoint(("127.0.0.1", 1083), ("127.0.0.1", 1084))
    assert not convert_proxy._same_endpoint(("198.18.4.1", 80), ("::1", 80, 0, 0))


def test_a_local_address_is_told_from_another():
    import ipaddress
    assert convert_proxy._is_local(ipaddress.ip_address("127.0.0.1"))
    assert not convert_proxy._is_local(ipaddress.ip_address("192.0.2.77"))


def _trickle(sock, data: bytes, every: float) -> None:
    import time
    for byte in data:
        try:
            sock.sendall(bytes((byte,)))
        except OSError:
            return
        time.sleep(every)


@pytest.mark.parametrize("talk", ["socks5", "convert"])
def test_a_client_that_trickles_is_cut_off_at_the_deadline(talk):
    """One byte every 0.2 s (each read would be on time): the whole conversation still ends
    at its deadline, 1 s here."""
    import time
    ours, theirs = socket.socketpair()
    message = (b"\x05\x01\x00" + b"\x05\x01\x00\x03\x08web.test\x1f\x40" if talk == "socks5"
               else convert.encode([convert.Connect("198.18.4.1", 80)]))
    threading.Thread(target=_trickle, args=(theirs, message, 0.2), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        if talk == "socks5":
            socks5.negotiate(ours, None, started + 1.0)
        else:
            convert_proxy._read_message(ours, started + 1.0)
    assert time.monotonic() - started < 1.5
    ours.close()
    theirs.close()


# ---------------------------------------------------------------------- the userspace halves
class _Writer:
    """What convert_aio's halves use of a stream writer, recording what they wrote."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = self.aborted = self.eof = False

    def write(self, data) -> None:
        self.written += bytes(data)

    async def drain(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name, default=None):
        return ("198.18.0.2", 40000) if name == "peername" else default


def _server_half(sent: bytes, **options):
    """The userspace server half's conversation with a peer that sent ``sent`` and then
    closed: (what converse returned, what it wrote, how it ended)."""
    import argparse
    import asyncio

    from mptcp_fast.cli import convert_aio
    from mptcp_fast.cli.net import _endpoint, _error_text

    args = argparse.Namespace(direction="mptcp-to-tcp", convert_timeout=0.5, socks_auth="none",
                              socks_users=None, allow_to=["192.0.2.0/24"],
                              to=None, address=["198.18.12.2"],
                              max_conversations=4, front="tcp")
    vars(args).update(options)

    async def run():
        halves = convert_aio.Halves(args, None, endpoint=_endpoint, error_text=_error_text,
                                    listen_port=5000, to=("", 0))
        reader = asyncio.StreamReader()
        reader.feed_data(sent)
        reader.feed_eof()
        writer = _Writer()
        opened = await halves.converse(reader, writer)
        return opened, writer
    return asyncio.run(run())


@pytest.mark.parametrize("sent, answer", [
    (b"\x02\x01\x00\x00", [convert.Error(convert.UNSUPPORTED_VERSION, b"\x01")]),
    (bytes.fromhex("01010000"), [convert.Error(convert.MALFORMED_MESSAGE)]),
    (convert.encode([convert.Info()]), [convert.SupportedTcpExtensions((30,))]),
    (convert.encode([convert.Connect("198.18.4.1", 80)]), [convert.Error(32)]),  # --allow-to
    (convert.encode([convert.Connect("198.18.12.2", 5000)]), [convert.Error(32)]),  # a loop
])
def test_the_userspace_server_half_answers_as_the_kernel_half(sent, answer, capsys):
    opened, writer = _server_half(sent)
    assert opened is None and writer.written == convert.encode(answer)
    assert writer.eof and (writer.closed or writer.aborted)


@given(data=st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_to_the_userspace_server_half_raise_nothing(data):
    """Whatever a peer sends, the conversation ends in an answer or a close (a Connect into
    --allow-to's TEST-NET would time out: 0.5 s here)."""
    opened, writer = _server_half(data)
    assert opened is None and (writer.closed or writer.aborted)
