"""What a user of mptcp_fast writes, as the README and docs/ show it, held to ``mypy --strict``
by tests/test_typing.py (type-checked there, never run: the docs' own blocks run in
tests/test_docs.py). Every public API a guide shows is used once with the types it gives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
from importlib.resources import files

import numpy as np

import mptcp_fast
from mptcp_fast import OptionError, options
from mptcp_fast.analysis import CaptureModel, analyze, build_model, capture, timeseries
from mptcp_fast.engine import (CloseReason, Config, Connection, ConnectionTerminated,
                               DataReceived, Endpoint, Event, RandomSource)
from mptcp_fast.net import aio, kernel
from mptcp_fast.net.tun import TunDevice
from mptcp_fast.sim.apps import BulkApp
from mptcp_fast.sim.netem import Network
from mptcp_fast.wire import crypto, dss, packet, receiver, segment
from mptcp_fast.wire.dss import Mapping
from mptcp_fast.wire.options import AddAddr, Dss, MalformedOption, Option, Segment, Timestamps

CAPTURE = files("mptcp_fast") / "data" / "kernel-mptcp.pcap"


def option_codec() -> None:
    raw = bytes.fromhex("1e1c200f43143b25bce216b29a915667704f82010000000107d0c3c8")
    opt: Option = options.parse_option(raw)
    assert isinstance(opt, Dss)
    dsn: int | None = opt.dsn
    data_len: int | None = opt.data_len
    assert (dsn, data_len, opt.checksum, opt.data_fin) == (11137778355729826305, 2000, 50120,
                                                          False)
    again: bytes = opt.encode()
    area: bytes = options.encode_tcp_options([Timestamps(1, 2), Dss(data_ack=5)])
    found: list[Option] = options.parse_tcp_options(area + again)
    buf = bytearray(60)
    written: int = options.encode_tcp_options_into([Timestamps(1, 2), opt], buf, 20)
    assert options.parse_tcp_options(buf, offset=20, length=written)[-1] == opt
    hmac: bytes | None = AddAddr(1, "198.18.2.1", port=10001, hmac=bytes(8)).hmac
    syn = bytes.fromhex("1e040181")
    try:
        options.parse_option(syn, Segment.ACK)
    except OptionError as exc:
        print(exc.option, exc.field, found, hmac)
    kept = options.parse_tcp_options(bytes.fromhex("1e030001"), keep_malformed=True)
    if isinstance(kept[0], MalformedOption):
        reason: str = kept[0].reason
        print(reason)
    print(opt.replace(data_fin=True).to_dict(), mptcp_fast.BACKEND)


def keys_and_hmacs() -> None:
    key: int = crypto.generate_key()
    token, idsn = crypto.key_token_idsn(key)
    server = crypto.KeyContext(0xFEDCBA9876543210, 0x0123456789ABCDEF)
    thmac: bytes = server.synack_hmac(0x22222222, 0x11111111)
    ok: bool = crypto.verify_join_synack(thmac, 0xFEDCBA9876543210, 0x0123456789ABCDEF,
                                         0x22222222, 0x11111111)
    hmac = crypto.add_addr_hmac(0x0123456789ABCDEF, 0xFEDCBA9876543210, 1, "198.18.0.1", 10001)
    ok = ok and server.verify_add_addr(AddAddr(1, "198.18.0.1", port=10001, hmac=hmac))
    table: crypto.TokenTable[str] = crypto.TokenTable(max_size=65536)
    key, token = table.new_key("a connection")
    owner: str | None = table.lookup(token)
    table.remove(token)
    print(idsn, ok, owner, crypto.acceleration())


def packets() -> None:
    area = options.encode_tcp_options([options.Timestamps(1, 2)])
    raw: bytes = packet.build_packet("198.18.0.1", "198.18.0.2", 40000, 80, 1000, 2000,
                                     packet.ACK, 65535, options=area, payload=b"hello")
    p: packet.Packet = packet.parse_packet(raw)
    sport: int = p.sport
    payload: memoryview = p.payload(raw)
    checks: tuple[bool | None, bool] = packet.verify_checksums(raw)
    incoming: segment.Incoming = segment.read_segment(raw)
    print(sport, bytes(payload), checks, incoming.seq, incoming.tsval, p.src_address(raw))


def data_sequence() -> None:
    expanded: int = dss.expand_seq(0x1FFFFFFF0, 0x10)
    checksum: int = dss.dss_checksum(1000, 1, 5, b"hello")
    maps = dss.SubflowMappings()
    fresh: bool = maps.declare(Mapping(dsn=1000, subflow_seq=1, length=5))
    runs: list[tuple[int, int]] = maps.resolve(2, 3)
    queue: dss.ReassemblyQueue = dss.ReassemblyQueue(1000, window=1 << 20)
    accepted: int = queue.push(1003, b"lo") + queue.push(1000, b"hel")
    queue.data_fin(1005)
    read: bytes = queue.read()
    ack: int = queue.data_ack
    alloc = dss.DsnAllocator(1000)
    mapping: Mapping = alloc.allocate("subflow 1", 1, 1448)
    reinject: list[tuple[int, int]] = alloc.to_reinject("subflow 1")
    acknowledged: bool = alloc.acknowledge(2448)
    events: list[receiver.Event] = []
    budget = receiver.ChecksumBudget(total=1 << 28, per_connection=1 << 26)
    up = receiver.DataReceiver(events, budget, connection=0,
                               verify_checksum=dss.verify_dss_checksum)
    up.start(1000, dss.ReassemblyQueue(1000), drain=lambda: None)
    counters: receiver.StreamCounters = up.counters()
    print(expanded, checksum, fresh, runs, accepted, read, ack, mapping, reinject,
          acknowledged, counters.data_bytes)


def engine() -> bytes:
    server = Endpoint(["198.18.0.2"], Config(), random=RandomSource.seeded(1))
    server.listen(5000)
    client = Endpoint(["198.18.0.1", "198.18.1.1"], Config(congestion_control="lia"),
                      random=RandomSource.seeded(2))
    now = 0.0
    conn: Connection = client.connect(("198.18.0.2", 5000), now)
    taken: int = conn.send(b"hello, multipath", end_stream=True)
    received = b""
    for _ in range(100):
        now += 0.001
        for out in client.packets_to_send(now):
            server.receive_packet(out, now)
        for endpoint in (client, server):
            timer: float | None = endpoint.get_timer()
            if timer is not None and timer <= now:
                endpoint.handle_timer(now)
        event: Event | None
        while (event := server.next_event()) is not None:
            if isinstance(event, DataReceived):
                received += event.data
            elif isinstance(event, ConnectionTerminated):
                reason: CloseReason = event.reason
                print(reason)
    legacy = dataclasses.replace(Config(scheduler="ecf"), profile="v0")
    version: int = legacy.version
    stats = conn.stats()
    print(taken, version, stats["subflows"], client.stats, conn.fallback)
    return received


def emulated_network() -> float:
    client = BulkApp(Endpoint(["198.18.0.1", "198.18.1.1"], Config(), RandomSource.seeded(1)),
                     send_bytes=4 << 20)
    server = BulkApp(Endpoint(["198.18.0.2"], Config(), RandomSource.seeded(2)))
    server.endpoint.listen(5000)
    net = Network(seed=1)
    net.add_host(client, ["198.18.0.1", "198.18.1.1"])
    net.add_host(server, ["198.18.0.2"])
    net.add_path("198.18.0.1", "198.18.0.2", rate=100e6, delay=0.010)
    conn: Connection = client.open(("198.18.0.2", 5000), now=0.0)
    end: float = net.run(until=30.0, stop=server.peer_ended)
    (transfer,) = server.transfers.values()
    digest: bytes = transfer.received_hash.digest()
    assert digest == client.transfers[conn.id].sent_hash.digest()
    return end + transfer.received


def analysis() -> None:
    report = analyze(CAPTURE)
    (conn,) = report["connections"]
    model: CaptureModel = build_model(CAPTURE, packets=True)
    (series,) = timeseries.model_series(model)
    summary = timeseries.summary(series)
    with capture.open_capture(CAPTURE) as reader:
        for seg in reader:
            number: int = seg.number
            print(number, seg.src_ip, seg.sport, options.parse_tcp_options(seg.options))
        print(reader.stats.as_dict())
    with capture.open_capture(CAPTURE) as reader:
        for batch in reader.columns(batch=65536):
            flags: np.ndarray = batch["dss_flags"]
            print(int((flags != 0xFF).sum()))
    print(conn["version"], summary["reinjection_delay_ms"])


async def asyncio_streams() -> bytes:
    with TunDevice("mft0", offload=True) as device:
        device.configure(["198.18.0.1/24", "198.18.2.1/24"])
        reader, writer = await aio.open_connection(
            "198.18.0.1", 5000, local_addresses=["198.18.0.2", "198.18.2.2"], device=device,
            config=Config(offload=True))
        writer.write(b"hello")
        writer.write_eof()
        data: bytes = await reader.read()
        print(writer.get_extra_info("subflows"))
        writer.close()
        await writer.wait_closed()
        writer.stack.close()
        return data


def kernel_sockets() -> None:
    listener: socket.socket = kernel.mptcp_socket()
    listener.bind(("127.0.0.1", 0))
    info = kernel.mptcp_info(listener)
    print(info.subflows, hex(info.token), kernel.subflow_addresses(listener))
    listener.close()


def main() -> None:
    option_codec()
    keys_and_hmacs()
    packets()
    data_sequence()
    print(hashlib.sha256(engine()).hexdigest(), emulated_network())
    analysis()
    print(asyncio.run(asyncio_streams()))
    kernel_sockets()


if __name__ == "__main__":
    main()
