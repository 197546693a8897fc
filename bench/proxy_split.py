"""How the userspace proxy shares one long upload between its two subflows: a plain TCP client
on 127.0.0.1 sends SIZE bytes through ``mptcp-fast proxy --engine userspace`` (two subflows
through one TUN device) to a kernel MPTCP sink in a namespace. Root only.

    python bench/proxy_split.py                             # 400 MiB, 4 runs
    python bench/proxy_split.py --size 100M --runs 2 --scheduler round-robin
    python bench/proxy_split.py --pure --loss 198.18.2.2:300  # pure engine, losses on one
    python bench/proxy_split.py --source OTHER_CHECKOUT       # an older engine, same test

What it shows, per run: the goodput; the bytes each subflow carried (the kernel's count,
MPTCP_TCPINFO, read by the sink at the end of the stream); and the longest time each one
carried nothing while the upload ran (the kernel's ``bytes_received`` per subflow, ``ss -ti``
in the namespace every 100 ms). A subflow that carried nothing for more than a second is
printed loudly, with the kernel's MPTCP counters that moved and the engine's own view of the
moments around it (cwnd, pipe, srtt, RTO, timeouts, stale; the proxy runs through a launcher
that samples its connections every 100 ms on the event loop), and the exit status is 1.

Both subflows cross the same device to the same kernel, so their round trips are alike and a
subflow left idle for seconds is the engine's doing (its scheduler's, its window's), not its
path's. ``--loss`` and ``--blackout`` drop the data of one subflow in the namespace (nftables)
to see how the split recovers from a loss or a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mptcp_fast.testing.testbed import kernel_namespace, run_name  # noqa: E402
from mptcp_fast.cli.main import _size  # noqa: E402  (the CLI's sizes: 400M, 1GiB, ...)

CLI = [sys.executable, "-m", "mptcp_fast"]
PROXY_PORT = 7210
# The sink: at the end of each connection's stream (the DATA_FIN), while its subflows are still
# up, one line: the bytes each subflow received (MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS).
SINK = r"""
import json, socket, sys
from mptcp_fast.net import kernel
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 5000))
listener.listen(8)
buffer = bytearray(1 << 20)
while True:
    sock, _ = listener.accept()
    while sock.recv_into(buffer):
        pass
    got = {}
    for (local, remote), info in zip(kernel.subflow_addresses(sock),
                                     kernel.subflow_tcp_info(sock)):
        got[remote[0]] = got.get(remote[0], 0) + info.bytes_received
    print(json.dumps(got), flush=True)
    sock.close()
"""
# The proxy, run through this launcher: it samples the engine's own view of each subflow on
# the event loop every 100 ms (one JSON line per sample to the file in MFS_TRACE), what the
# kernel's counters cannot show (cwnd, pipe, RTO backoff, stale, the data level's queues).
PROXY_CHILD = r"""
import asyncio, json, os, sys
from mptcp_fast.net import aio
from mptcp_fast.cli.main import main
trace = open(os.environ["MFS_TRACE"], "w")
def subflow(sf):
    return {"sid": sf.sid, "state": sf.state_name, "stale": sf.stale, "timeouts": sf.timeouts,
            "una": sf.snd_una, "nxt": sf.snd_nxt, "pipe": sf.pipe, "cwnd": int(sf.window.cwnd),
            "ssthresh": sf.window.ssthresh, "srtt": sf.srtt, "rto": sf.rtt.rto,
            "recovery": sf.in_recovery, "sent": sf.bytes_sent,
            "retransmits": sf.stats_retransmits, "room": sf.has_room(0), "usable": sf.usable}
def sample(stack):
    now = stack._loop.time()                  # time.monotonic(): the tool's clock too
    try:
        for conn in list(stack.endpoint.connections.values()):
            alloc = conn.allocator
            edge = getattr(conn, "peer_edge", None)
            record = {"t": now, "cid": conn.id, "unsent": len(conn.unsent),
                      "reinject": len(conn.reinject),
                      "data_retransmits": getattr(conn, "data_retransmits", 0),
                      "reinjected": conn.reinjected_bytes,
                      "room": None if alloc is None or edge is None
                              else (edge - alloc.next_dsn) % (1 << 64),
                      "in_flight": None if alloc is None
                                   else (alloc.next_dsn - alloc.data_ack) % (1 << 64),
                      "subflows": [subflow(sf) for sf in conn.subflows]}
            trace.write(json.dumps(record) + "\n")
        trace.flush()
    except Exception as exc:                  # an older engine without some field: say so
        trace.write(json.dumps({"t": now, "error": repr(exc)}) + "\n")
        trace.flush()
        return
    stack._loop.call_later(0.1, sample, stack)
init = aio.Stack.__init__
def traced(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self._loop.call_later(0.1, sample, self)
aio.Stack.__init__ = traced
sys.argv[0] = "mptcp-fast"
sys.exit(main())
"""
SUBFLOW_LINE = re.compile(r"198\.18\.\d+\.1:5000\s+(\S+):\d+")


def _wait(check, what: str, process) -> None:
    end = time.monotonic() + 10
    while not check():
        if time.monotonic() > end or process.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def received_per_subflow(ns) -> dict:
    """{engine address: bytes the kernel received on the subflows from it} (ss -ti prints a
    socket's line, then its TCP info on the next)."""
    out = ns.run("ss", "-tinH", "state", "established", "sport", "= :5000")
    got, peer = {}, None
    for line in out.splitlines():
        match = SUBFLOW_LINE.search(line)
        if match:
            peer = match.group(1)
            continue
        received = re.search(r"bytes_received:(\d+)", line)
        if received and peer:
            got[peer] = got.get(peer, 0) + int(received.group(1))
            peer = None
    return got


def longest_idle(samples, end: float) -> dict:
    """{address: the longest time before ``end`` its count did not move}."""
    idle, moved, last = {}, {}, {}
    for at, got in samples:
        if at > end:
            break
        for address, count in got.items():
            if last.get(address) != count:
                moved[address], last[address] = at, count
            idle[address] = max(idle.get(address, 0.0), at - moved[address])
    return idle


def upload(size: int) -> float:
    """Send ``size`` bytes through the proxy and wait for the close; the seconds it took."""
    buffer = memoryview(bytearray(1 << 20))
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", PROXY_PORT)) as sock:
        sent = 0
        while sent < size:
            n = min(len(buffer), size - sent)
            sock.sendall(buffer[:n])
            sent += n
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return time.monotonic() - start


IDLE_LIMIT = 1.0           # seconds a subflow may carry nothing before a run is flagged


def drop_some(ns, address: str, per_million: int) -> None:
    """Make the namespace's kernel drop, at random, ``per_million`` in a million of the data
    packets (longer than 200 bytes) that come from ``address`` to the sink (an nftables rule
    on its input hook): losses on one subflow only."""
    ns.run("nft", "add", "table", "inet", "mfs")
    ns.run("nft", "add", "chain", "inet", "mfs", "in",
           "{ type filter hook input priority 0; }")
    some = [] if per_million >= 1000000 else \
        ["numgen", "random", "mod", "1000000", "lt", str(per_million)]
    ns.run("nft", "add", "rule", "inet", "mfs", "in", "ip", "saddr", address, "tcp", "dport",
           "5000", "meta", "length", "gt", "200", *some, "counter", "drop")


def one_run(size: int, scheduler: str, pure: bool, trace_path: str,
            loss: tuple | None = None, blackout: tuple | None = None,
            source: str = ROOT) -> dict:
    ns = kernel_namespace("mfs-k")
    try:
        if loss is not None:
            drop_some(ns, *loss)
        env = dict(os.environ, MFS_TRACE=trace_path, PYTHONPATH=source)
        if pure:
            env["MPTCP_FAST_PURE"] = "1"
        # (in ``source``: ``python -c`` puts the working directory first on sys.path)
        sink = ns.popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, text=True, env=env, cwd=source)
        proxy = None
        try:
            _wait(lambda: ":5000 " in ns.run("ss", "-Hltn"), "the sink", sink)
            proxy = subprocess.Popen(
                [sys.executable, "-c", PROXY_CHILD,
                 "proxy", "--engine", "userspace", "--listen", f"127.0.0.1:{PROXY_PORT}",
                 "--to", "198.18.0.1:5000", "--tun", run_name("mfs", "0"),
                 "--tun-address", "198.18.0.1/24", "--tun-address", "198.18.2.1/24",
                 "--netns", ns.name, "--address", "198.18.0.2", "--address", "198.18.2.2",
                 "--scheduler", scheduler],
                stdout=subprocess.DEVNULL, stderr=open(trace_path + ".stderr", "w"), env=env,
                cwd=source)
            _wait(lambda: f":{PROXY_PORT} " in subprocess.run(
                ["ss", "-Hltn"], capture_output=True, text=True).stdout, "the proxy", proxy)
            before = ns.counters()
            samples, done = [], threading.Event()
            start = time.monotonic()

            def watch():
                cut = blackout
                while not done.is_set():
                    if cut is not None and time.monotonic() - start >= cut[1]:
                        if len(cut) == 3:          # every data packet of cut[0] dropped
                            drop_some(ns, cut[0], 1000000)
                            cut = (cut[0], cut[1] + cut[2])
                        else:                      # and then none again
                            ns.run("nft", "delete", "table", "inet", "mfs")
                            cut = None
                    samples.append((time.monotonic() - start, received_per_subflow(ns)))
                    time.sleep(0.1)
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                seconds = upload(size)
            finally:
                done.set()
                watcher.join()
            final = json.loads(sink.stdout.readline() or "{}")   # the sink's count at the end
            return {"goodput_mbit": size * 8 / seconds / 1e6, "seconds": seconds,
                    "received": final, "longest_idle": longest_idle(samples, seconds),
                    "idle_spans": idle_spans(samples, seconds),
                    "counters": ns.counters_since(before), "start": start,
                    "sampled": sum(1 for _, got in samples if got)}
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(10)
            sink.kill()
            sink.wait()
    finally:
        ns.delete()


def idle_spans(samples, end: float, limit: float = IDLE_LIMIT) -> list:
    """[(address, from, to)] of every stretch longer than ``limit`` in which a subflow's count
    did not move (before ``end``)."""
    spans, moved, last = [], {}, {}
    for at, got in samples:
        if at > end:
            break
        for address, count in got.items():
            if last.get(address) != count:
                if address in moved and at - moved[address] > limit:
                    spans.append((address, moved[address], at))
                moved[address], last[address] = at, count
    for address, since in moved.items():
        if end - since > limit and samples and samples[-1][0] - since > limit:
            spans.append((address, since, min(end, samples[-1][0])))
    return spans


def engine_view(trace_path: str, start: float, frm: float, to: float) -> list:
    """The engine's samples (the launcher's trace) from ``frm`` to ``to`` seconds, one line
    each (the trace's clock is time.monotonic(); ``start`` is the upload's start on it): per
    subflow its state, cwnd, pipe, srtt, RTO, timeouts, stale and bytes sent."""
    lines = []
    with open(trace_path) as f:
        for line in f:
            r = json.loads(line)
            r["t"] -= start
            if "error" in r:
                lines.append(f"{r['t']:7.2f} the engine's sampler stopped: {r['error']}")
                continue
            if frm <= r["t"] <= to:
                subs = "; ".join(
                    f"sf{s['sid']} {s['state']} cwnd {s['cwnd']} pipe {s['pipe']} "
                    f"una..nxt {s['nxt'] - s['una']} srtt {(s['srtt'] or 0) * 1e3:.2f} ms "
                    f"rto {s['rto']:.2f} to {s['timeouts']}"
                    f"{' STALE' if s['stale'] else ''}{'' if s['room'] else ' full'}"
                    f"{' rec' if s['recovery'] else ''} sent {s['sent'] / 1e6:.1f}M "
                    f"rtx {s['retransmits']}" for s in r["subflows"])
                lines.append(f"{r['t']:7.2f} unsent {r['unsent']} room {r['room']} "
                             f"flight {r['in_flight']} drtx {r['data_retransmits']} | {subs}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=_size, default=400 << 20)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--scheduler", default="lowest-rtt")
    parser.add_argument("--pure", action="store_true",
                        help="the pure-Python engine (MPTCP_FAST_PURE=1) in the proxy")
    parser.add_argument("--loss", default=None, metavar="ADDRESS:PER_MILLION",
                        help="drop that share of the data packets from one of the engine's "
                             "addresses (e.g. 198.18.2.2:100: one in 10,000 on the joined "
                             "subflow)")
    parser.add_argument("--blackout", default=None, metavar="ADDRESS:AT:SECONDS",
                        help="drop every data packet from that address for SECONDS from AT "
                             "seconds into the upload (e.g. 198.18.2.2:0.5:0.5: the joined "
                             "subflow times out)")
    parser.add_argument("--source", default=ROOT, metavar="DIR",
                        help="run the proxy (and the sink) from this checkout of the project "
                             "(default: this one): an older engine against the same test")
    parser.add_argument("--trace", default=None, metavar="PREFIX",
                        help="keep the engine's samples of run i in PREFIX.i.jsonl")
    args = parser.parse_args()
    backend = "pure" if args.pure else "compiled"
    print(f"{args.size / 2**20:g} MiB through the userspace proxy ({backend}), "
          f"scheduler {args.scheduler}" + (f", losses {args.loss}" if args.loss else "")
          + (f", blackout {args.blackout}" if args.blackout else ""),
          flush=True)
    flagged = 0
    for i in range(args.runs):
        trace_path = f"{args.trace}.{i}.jsonl" if args.trace else \
            os.path.join(tempfile.gettempdir(), f"proxy_split.{os.getpid()}.{i}.jsonl")
        loss = None
        if args.loss:
            address, _, share = args.loss.rpartition(":")
            loss = (address, int(share))
        blackout = None
        if args.blackout:
            address, at, seconds = args.blackout.rsplit(":", 2)
            blackout = (address, float(at), float(seconds))
        r = one_run(args.size, args.scheduler, args.pure, trace_path, loss, blackout,
                    os.path.abspath(args.source))
        carried = ", ".join(
            f"{a} {b / 1e6:,.1f} MB (idle up to {r['longest_idle'].get(a, 0):.1f} s)"
            for a, b in sorted(r["received"].items()))
        print(f"  run {i}: {r['goodput_mbit']:,.0f} Mbit/s in {r['seconds']:.1f} s; {carried}",
              flush=True)
        if not r["sampled"]:
            print(f"  run {i}: *** NO SAMPLE OF THE SUBFLOWS (ss): idle times unknown ***",
                  flush=True)
            flagged += 1
        if len(r["received"]) < 2:
            print(f"  run {i}: *** ONE SUBFLOW ONLY: {sorted(r['received'])} ***", flush=True)
            flagged += 1
        for address, frm, to in r["idle_spans"]:
            flagged += 1
            print(f"  run {i}: *** SUBFLOW {address} IDLE {to - frm:.1f} s "
                  f"({frm:.1f} s to {to:.1f} s) ***", flush=True)
            print(f"      kernel counters that moved: {r['counters']}")
            for line in engine_view(trace_path, r['start'], frm - 0.5, min(to, frm + 3)):
                print("      " + line)
        if not args.trace:                          # the samples and the proxy's stderr
            for path in (trace_path, trace_path + ".stderr"):
                if os.path.exists(path):
                    os.unlink(path)
    print(f"{flagged} idle subflow(s) over {IDLE_LIMIT:g} s in {args.runs} run(s)")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
