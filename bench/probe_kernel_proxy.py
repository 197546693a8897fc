"""Repeat the scenario of tests/test_netcli.py::test_the_kernel_proxy_carries_mptcp_to_plain_tcp
many times, under CPU load, and look closely at every run whose bytes arrive wrong.

One run (as the test, everything inside a fresh namespace of this script's): a kernel MPTCP
client (KernelPeer, two subflows: a ``subflow`` endpoint on 198.18.2.1, hold 0.2 s) sends
3 MiB of the stream of seed 22 to 198.18.0.1:5000 and reads 24 MiB; there a receiver carries
it to a plain TCP server on 127.0.0.1:7131 that sends 24 MiB of seed 21 and keeps what it
receives. The receiver (``--mode``):

- ``proxy``: ``mptcp-fast proxy --engine kernel --direction mptcp-to-tcp`` (the test's), with
  MPTCP_FAST_RELAY=copy or splice (``--relay``);
- ``blocking``: a process of plain Python, no code of this project: one blocking thread per
  direction doing recv/sendall on the accepted kernel MPTCP socket;
- ``blocking-hammer``: the same, plus a thread that only looks at the MPTCP socket
  (MPTCP_SUBFLOW_ADDRS, which takes the socket's lock) for its first second;
- ``blocking-mimic``: the same, plus the proxy's socket options and its look at the subflows
  every 50 ms;
- ``thread``: the blocking copy as threads of this process.

``--wait-join``: the client sends its first byte only once its second subflow is ESTABLISHED
(at most testbed.JOIN_WAIT seconds).

Every run is captured (``tcpdump -i lo -s 200`` in the namespace); the capture is kept only
for a run whose bytes differ (``--keep DIR``). For such a run the script prints the first
offset where the received stream differs, the shift k such that the received bytes there are
the sent bytes of offset + k, where the damage ends, the MPTCP counters of the namespace
(fresh per run, so its absolute values are this run's), and from the capture: each subflow's
first mapping, the receiver's DATA_ACK when the MP_JOIN subflow's first data arrived and
after it, the other subflow's segment at that ACK point, and any MP_TCPRST / RST.
``--analyze PCAP`` reads one kept capture again; ``--summarize`` the ``--json`` records.

Root only. Examples:
    PYTHONPATH=. python bench/probe_kernel_proxy.py --runs 160 --load 2 --keep DIR --json F
    PYTHONPATH=. python bench/probe_kernel_proxy.py --runs 160 --load 2 --wait-join
    PYTHONPATH=. python bench/probe_kernel_proxy.py --mode blocking-hammer --runs 120
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from mptcp_fast.net import kernel
from mptcp_fast.testing.testbed import KernelPeer, kernel_namespace, stream

UP, DOWN = 3 << 20, 24 << 20
UP_SEED, DOWN_SEED = 22, 21
PORT, SERVER_PORT = 5000, 7131


class StoringPeer(KernelPeer):
    """KernelPeer that keeps the bytes it received (the test's hashes say only that they
    differ)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data = bytearray()

    def _received(self, chunk: memoryview) -> None:
        self.data += chunk


# ---------------------------------------------------------------- the receivers
def start_proxy(ns, relay: str):
    env = {**os.environ, "MPTCP_FAST_RELAY": relay}
    # (inside the namespace, so its upstream connection to 127.0.0.1 stays in it too)
    return ns.popen([sys.executable, "-m", "mptcp_fast", "proxy", "--engine", "kernel",
                     "--direction", "mptcp-to-tcp", "--netns", ns.name, "--listen",
                     f"198.18.0.1:{PORT}", "--to", f"127.0.0.1:{SERVER_PORT}", "--count", "1",
                     "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    env=env)


class ThreadCopy:
    """The trivial relay: accept one kernel MPTCP connection, connect a plain TCP socket,
    one blocking thread per direction (recv, sendall; at the end shutdown(SHUT_WR))."""

    def __init__(self, ns):
        with ns.entered():
            self.listener = kernel.mptcp_socket()
            self.upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("198.18.0.1", PORT))
        self.listener.listen(8)
        self.moved = [0, 0]
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pump(self, i, src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                self.moved[i] += len(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = exc

    def _run(self):
        try:
            client, _ = self.listener.accept()
            self.upstream.connect(("127.0.0.1", SERVER_PORT))
            pumps = [threading.Thread(target=self._pump, args=(0, client, self.upstream)),
                     threading.Thread(target=self._pump, args=(1, self.upstream, client))]
            for p in pumps:
                p.start()
            for p in pumps:
                p.join()
            self.subflows = kernel.subflow_addresses(client)
            client.close()
            self.upstream.close()
        except OSError as exc:
            self.error = exc
        finally:
            self.listener.close()


# The same trivial relay as a process of its own (as the proxy is one): plain Python, nothing of
# this project's code, started inside the namespace.
BLOCKING_COPY = r"""
import socket, sys, threading, time
MIMIC = len(sys.argv) > 1 and sys.argv[1] == "mimic"
HAMMER = len(sys.argv) > 1 and sys.argv[1] == "hammer"
if MIMIC or HAMMER:
    from mptcp_fast.net import kernel
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)   # IPPROTO_MPTCP
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("198.18.0.1", %d))
listener.listen(8)
client, _ = listener.accept()     # (the listener stays open: the MP_JOIN SYNs come to it)
if MIMIC:   # what the proxy does besides copying: its options, its look at the subflows
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 128 << 10)
    next_sample = time.monotonic() + 0.05
if HAMMER:  # only looks at the socket: MPTCP_SUBFLOW_ADDRS, which takes the MPTCP socket's lock
    def hammer(end=time.monotonic() + 1.0):
        while time.monotonic() < end:
            kernel.subflow_addresses(client)
    threading.Thread(target=hammer, daemon=True).start()
upstream = socket.create_connection(("127.0.0.1", %d))
moved = [0, 0]
def pump(i, src, dst):
    global next_sample
    while data := src.recv(1 << 16):
        dst.sendall(data)
        moved[i] += len(data)
        if MIMIC and time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 0.05
            kernel.subflow_addresses(client)
    dst.shutdown(socket.SHUT_WR)
threads = [threading.Thread(target=pump, args=(0, client, upstream)),
           threading.Thread(target=pump, args=(1, upstream, client))]
for t in threads: t.start()
for t in threads: t.join()
print(moved[0], moved[1], flush=True)
""" % (PORT, SERVER_PORT)


def wait_listening(ns, port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while f":{port} " not in ns.run("ss", "-Hltn"):
        if time.monotonic() > end:
            raise AssertionError(f"nothing listens on {port}")
        time.sleep(0.05)


# ---------------------------------------------------------------- one run
def one_run(i: int, args, expected_up: bytes, expected_down_sha: str) -> dict:
    ns = kernel_namespace("prb-k")
    capture_file = os.path.join(args.keep, f"{args.batch}-run{i:04d}.pcap")
    capture = None
    result = {"run": i}
    try:
        ns.ip("addr", "add", "198.18.0.1/24", "dev", "lo")
        ns.ip("addr", "add", "198.18.2.1/24", "dev", "lo")
        ns.ip("link", "set", "lo", "up")
        ns.ip("mptcp", "endpoint", "add", "198.18.2.1", "dev", "lo", "subflow")
        if args.capture:
            capture = ns.popen(["tcpdump", "-i", "lo", "-s", "200", "-B", "32768", "-U", "-n",
                                "-w", capture_file], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            line = capture.stderr.readline()             # "listening on lo ..."
            assert "listening" in line, line
        server = StoringPeer(ns, send_bytes=DOWN, seed=DOWN_SEED, mptcp=False)
        server.listen("127.0.0.1", SERVER_PORT)
        proxy = copier = None
        if args.mode == "proxy":
            proxy = start_proxy(ns, args.relay)
        elif args.mode.startswith("blocking"):
            proxy = ns.popen([sys.executable, "-c", BLOCKING_COPY]
                             + args.mode.split("-")[1:], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        else:
            copier = ThreadCopy(ns)
        try:
            wait_listening(ns, PORT)
            client = StoringPeer(ns, send_bytes=UP, seed=UP_SEED, hold=0.2, subflows=2,
                                 joined_first=args.wait_join)
            client.connect("198.18.0.1", PORT)
            client.join(60)
            server.join(30)
            if proxy is not None:
                out, err = proxy.communicate(timeout=30)
                result["proxy_err"] = err
                reports = [json.loads(x) for x in out.splitlines() if x.startswith("{")] \
                    if args.mode == "proxy" else [{"event": "connection", "moved": out}]
                reports = [r for r in reports if r["event"] == "connection"]
                result["proxy_report"] = reports[0] if reports else None
            else:
                copier.thread.join(30)
                result["proxy_err"] = repr(copier.error) if copier.error else ""
        finally:
            if proxy is not None:
                proxy.kill()
        result["client_error"] = repr(client.error) if client.error else None
        result["server_error"] = repr(server.error) if server.error else None
        result["join_waited"] = client.join_waited
        result["client_subflows"] = len(client.subflows)
        result["up_ok"] = bytes(server.data) == expected_up
        result["down_ok"] = (client.received == DOWN
                             and client.received_sha256 == expected_down_sha)
        result["up_len"], result["down_len"] = len(server.data), client.received
        result["counters"] = ns.counters()
        if not result["up_ok"]:
            result["shape"] = shape(bytes(server.data), expected_up)
    finally:
        if capture is not None:
            time.sleep(0.1)
            capture.send_signal(signal.SIGINT)
            try:
                _, tail = capture.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                capture.kill()
                _, tail = capture.communicate()
            result["capture_drops"] = [x for x in tail.splitlines() if "dropped" in x]
        ns.delete()
    bad = not (result["up_ok"] and result["down_ok"]) or result["client_error"] \
        or result["server_error"]
    result["failed"] = bool(bad)
    if capture is not None:
        if bad or args.keep_all:
            result["capture"] = capture_file
        else:
            os.unlink(capture_file)
    return result


def shape(got: bytes, sent: bytes) -> dict:
    """Where ``got`` first differs from ``sent``, the shift k (got[off:] == sent[off+k:]) and
    where the damage ends (the last differing byte + 1)."""
    n = min(len(got), len(sent))
    # first differing offset (chunked compare)
    off = next((o for o in range(0, n, 4096) if got[o:o + 4096] != sent[o:o + 4096]), None)
    if off is None:
        return {"first": n, "note": "lengths differ only"}
    while got[off] == sent[off]:
        off += 1
    probe = got[off:off + 64]
    found = sent.find(probe, max(0, off - 600_000), off + 600_000)
    k = found - off if found >= 0 else None
    last = max(o for o in range(0, n, 4096) if got[o:o + 4096] != sent[o:o + 4096])
    end = min(last + 4096, n)
    while end > off and got[end - 1] == sent[end - 1]:
        end -= 1
    run = None
    if k is not None:                               # how long got follows sent shifted by k
        run = 0
        while off + run < n and 0 <= off + k + run < len(sent) and \
                got[off + run] == sent[off + k + run]:
            run += 1
    return {"first": off, "k": k, "shifted_run": run, "damage_end": end,
            "damaged": end - off}


# ---------------------------------------------------------------- a failing run's capture
FIELDS = ["frame.number", "frame.time_relative", "tcp.stream", "tcp.srcport", "tcp.dstport",
          "ip.src", "tcp.flags.str", "tcp.seq", "tcp.len", "tcp.options.mptcp.subtype",
          "tcp.options.mptcp.sendkey", "tcp.options.mptcp.rawdataseqno",
          "tcp.options.mptcp.subflowseqno", "tcp.options.mptcp.datalvllen",
          "tcp.options.mptcp.rawdataack", "tcp.options.mptcp.rst_reason",
          "tcp.options.mptcp.datafin.flag"]


def _packets(pcap: str) -> list[dict]:
    out = subprocess.run(["tshark", "-r", pcap, "-n", "-Y", f"tcp.port == {PORT}", "-T",
                          "fields", "-E", "separator=|", "-E", "occurrence=a",
                          "-E", "aggregator=,", *sum((["-e", f] for f in FIELDS), [])],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = dict(zip(FIELDS, line.split("|")))
        rows.append(values)
    return rows


def analyze(pcap: str, first: int | None = None, k: int | None = None, window: int = 40,
            printer=print) -> dict:
    """The subflows, the join's first mapping, the receiver's DATA_ACKs and resets around the
    first wrong offset ``first`` (stream offsets: 0 is the client's first data byte)."""
    rows = _packets(pcap)
    key = None
    for r in rows:                                  # the client's key: its MP_CAPABLE ACK
        if r["tcp.dstport"] == str(PORT) and r["tcp.options.mptcp.sendkey"] and \
                "S" not in r["tcp.flags.str"]:
            key = int(r["tcp.options.mptcp.sendkey"].split(",")[0], 0)
            break
    if key is None:
        printer("  no MP_CAPABLE key from the client in the capture")
        return {}
    idsn = int.from_bytes(hashlib.sha256(key.to_bytes(8, "big")).digest()[-8:], "big")

    def offset(raw: str):
        if not raw:
            return None
        value = int(raw.split(",")[0])
        if value < 1 << 32 and idsn >= 1 << 32:        # a 4-byte DSN or DATA_ACK
            return (value - idsn - 1) % (1 << 32)
        return (value - idsn - 1) % (1 << 64)

    streams: dict[str, dict] = {}
    events = []
    for r in rows:
        s = r["tcp.stream"]
        to_receiver = r["tcp.dstport"] == str(PORT)
        info = streams.setdefault(s, {"join": False, "first_map": None, "client": None,
                                      "rst_by_receiver": [], "rst_by_client": []})
        if "S" in r["tcp.flags.str"] and to_receiver:
            info["join"] = "1" in r["tcp.options.mptcp.subtype"].split(",")
            info["client"] = f"{r['ip.src']}:{r['tcp.srcport']}"
        length = int(r["tcp.len"] or 0)
        e = {"n": int(r["frame.number"]), "t": float(r["frame.time_relative"]), "stream": s,
             "dir": "c>r" if to_receiver else "r>c", "flags": r["tcp.flags.str"],
             "seq": r["tcp.seq"], "len": length,
             "dsn": offset(r["tcp.options.mptcp.rawdataseqno"]),
             "ssn": r["tcp.options.mptcp.subflowseqno"],
             "dll": r["tcp.options.mptcp.datalvllen"],
             # (the receiver's DATA_ACKs only: the client's acknowledge the other stream)
             "ack": None if to_receiver else offset(r["tcp.options.mptcp.rawdataack"]),
             "subtypes": r["tcp.options.mptcp.subtype"],
             "rst_reason": r["tcp.options.mptcp.rst_reason"],
             "datafin": r["tcp.options.mptcp.datafin.flag"]}
        events.append(e)
        if to_receiver and length and e["dsn"] is not None and info["first_map"] is None:
            info["first_map"] = e
        if "8" in r["tcp.options.mptcp.subtype"].split(",") or "R" in r["tcp.flags.str"]:
            (info["rst_by_client"] if to_receiver else info["rst_by_receiver"]).append(e)
    summary = {"streams": {}}
    for s, info in streams.items():
        fm = info["first_map"]
        summary["streams"][s] = {
            "client": info["client"], "join": info["join"],
            "first_map": (fm["dsn"], fm["ssn"], fm["dll"], fm["len"], fm["n"]) if fm else None,
            "rst_by_receiver": [(e["n"], e["flags"], e["rst_reason"]) for e in
                                info["rst_by_receiver"]],
            "rst_by_client": [(e["n"], e["flags"], e["rst_reason"]) for e in
                              info["rst_by_client"]]}
        printer(f"  stream {s} from {info['client']} join={info['join']} first mapping "
                f"(dsn offset, ssn, dll, seg len, frame)="
                f"{summary['streams'][s]['first_map']} receiver RST/MP_TCPRST="
                f"{summary['streams'][s]['rst_by_receiver']} client RST="
                f"{summary['streams'][s]['rst_by_client']}")
    joins = [s for s, info in streams.items() if info["join"] and info["first_map"]]
    if joins:
        j = joins[0]
        jm = streams[j]["first_map"]
        summary["join_first_dsn"] = jm["dsn"]
        summary["join_first_frame"] = jm["n"]
        if first is not None:
            printer(f"  join's first mapping DSN offset {jm['dsn']} vs first wrong offset "
                    f"{first}: {'EQUAL' if jm['dsn'] == first else 'differ'}")
        # the receiver's data-level ACK point as the join's first data arrived, and what a
        # receiver that placed that data at its ACK point (instead of at its DSN) would show
        before = [e for e in events if e["dir"] == "r>c" and e["ack"] is not None
                  and e["n"] < jm["n"]]
        ack_before = before[-1]["ack"] if before else None
        acks = [e for e in events if e["dir"] == "r>c" and e["ack"] is not None
                and e["n"] > jm["n"]][:6]
        summary["acks_after_join"] = [(e["n"], e["stream"], e["ack"]) for e in acks]
        summary["ack_before_join"] = ack_before
        third_ack = next((e for e in events if e["stream"] == j and e["dir"] == "c>r"
                          and "S" not in e["flags"] and not e["len"]), None)
        if third_ack is not None:
            summary["third_ack_to_first_data_us"] = round((jm["t"] - third_ack["t"]) * 1e6)
        printer(f"  receiver's DATA_ACK before the join's first data: {ack_before}; so "
                f"join DSN - ACK point = {jm['dsn'] - ack_before if ack_before is not None else None}"
                f" (the shift k a placement at the ACK point gives), and ACK point + the join's "
                f"first length = {ack_before + jm['len'] if ack_before is not None else None}")
        printer(f"  receiver's DATA_ACKs after it (frame, stream, ack): "
                f"{summary['acks_after_join']}")
        if ack_before is not None:
            tail = [e for e in events if e["dir"] == "c>r" and e["stream"] != j and e["len"]
                    and e["dsn"] is not None and e["dsn"] <= ack_before < e["dsn"] + e["len"]]
            for e in tail[:2]:
                printer(f"  the other subflow's segment at the ACK point: stream {e['stream']} "
                        f"frame {e['n']} dsn {e['dsn']} len {e['len']} ({'before' if e['n'] < jm['n'] else 'after'}"
                        f" the join's first data, {round((e['t'] - jm['t']) * 1e6)} us)")
        printer(f"  the join's third ACK -> its first data: "
                f"{summary.get('third_ack_to_first_data_us')} us")
        # a window of events around the join's first data
        idx = next(i for i, e in enumerate(events) if e["n"] == jm["n"])
        printer("  frames around the join's first data:")
        for e in events[max(0, idx - window // 2): idx + window // 2]:
            printer(f"    {e['n']:6d} {e['t']:.6f} s{e['stream']} {e['dir']} {e['flags']:>12}"
                    f" seq={e['seq']} len={e['len']} dsn={e['dsn']} ssn={e['ssn']} "
                    f"dll={e['dll']} ack={e['ack']} st={e['subtypes']} "
                    f"rst={e['rst_reason']} fin={e['datafin']}")
    return summary


def summarize(files: list[str]) -> None:
    """Runs and failures per file, and each failure's shape and the capture's findings."""
    for name in files:
        with open(name) as f:
            records = [json.loads(line) for line in f]
        bad = [r for r in records if r["failed"]]
        print(f"{name}: {len(bad)} of {len(records)} failed (mode={records[0]['mode']} "
              f"relay={records[0]['relay']} wait_join={records[0]['wait_join']} "
              f"load={records[0]['load']})")
        for r in bad:
            a = r.get("analysis") or {}
            join = next((v for v in a.get("streams", {}).values() if v["join"]), {})
            c = r["counters"]
            print(f"  run {r['run']}: up_ok={r['up_ok']} down_ok={r['down_ok']} "
                  f"shape={r.get('shape')} join_first_dsn={a.get('join_first_dsn')} "
                  f"acks_after_join={[x[2] for x in a.get('acks_after_join', [])[:3]]} "
                  f"receiver_rst_on_join={join.get('rst_by_receiver')} "
                  f"MPRstTx={c.get('MPTcpExtMPRstTx')} DSSNotMatching="
                  f"{c.get('MPTcpExtDSSNotMatching')} DSSCorruptionReset="
                  f"{c.get('MPTcpExtDSSCorruptionReset')} MPTCPRetrans="
                  f"{c.get('MPTcpExtMPTCPRetrans')} DuplicateData="
                  f"{c.get('MPTcpExtDuplicateData')} capture={r.get('capture')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mode", choices=("proxy", "thread", "blocking", "blocking-mimic", "blocking-hammer"), default="proxy")
    parser.add_argument("--relay", choices=("copy", "splice"), default="copy")
    parser.add_argument("--wait-join", action="store_true",
                        help="the client sends its first byte only once both subflows are up")
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes (CPU load)")
    parser.add_argument("--no-capture", dest="capture", action="store_false")
    parser.add_argument("--keep", default="/tmp/probe_kernel_proxy",
                        help="directory for the captures of failing runs")
    parser.add_argument("--keep-all", action="store_true", help="keep every run's capture")
    parser.add_argument("--json", help="append every run's record to this JSON-lines file")
    parser.add_argument("--summarize", nargs="+", metavar="JSONL",
                        help="only summarize the records of earlier runs (--json files)")
    parser.add_argument("--analyze", metavar="PCAP", help="only analyze this capture")
    parser.add_argument("--offset", type=int, help="(with --analyze) the first wrong offset")
    args = parser.parse_args()
    if args.analyze:
        analyze(args.analyze, args.offset, window=60)
        return
    if args.summarize:
        summarize(args.summarize)
        return
    os.makedirs(args.keep, exist_ok=True)
    args.batch = time.strftime("%H%M%S")            # (captures of two batches never collide)
    expected_up = stream(UP_SEED, UP)
    expected_down_sha = hashlib.sha256(stream(DOWN_SEED, DOWN)).hexdigest()
    load = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
            for _ in range(args.load)]
    failures = 0
    try:
        for i in range(args.runs):
            started = time.monotonic()
            r = one_run(i, args, expected_up, expected_down_sha)
            r["seconds"] = round(time.monotonic() - started, 2)
            failures += r["failed"]
            c = r["counters"]
            brief = {k: c[k] for k in sorted(c) if "Rst" in k or "DSS" in k or "Fallback" in k
                     or "NoDSSInWindow" in k or "DuplicateData" in k or "Join" in k}
            print(f"run {i}: {'FAIL' if r['failed'] else 'ok'} {r['seconds']} s"
                  + f" subflows={r['client_subflows']} waited={r['join_waited']}"
                  + (f" shape={r.get('shape')} down_ok={r['down_ok']} errors="
                     f"{r['client_error']},{r['server_error']},{r.get('proxy_err')!r}"
                     f" capture={r.get('capture')} drops={r.get('capture_drops')}"
                     f" counters={brief}" if r["failed"] else ""), flush=True)
            if r.get("capture") and r["failed"]:
                try:
                    r["analysis"] = analyze(r["capture"], (r.get("shape") or {}).get("first"))
                except Exception as exc:                # (the probe goes on)
                    print(f"  analysis failed: {exc!r}")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({**vars(args), **r}) + "\n")
    finally:
        for p in load:
            p.kill()
            p.wait()
    print(f"{failures} of {args.runs} runs failed (mode={args.mode} relay={args.relay} "
          f"wait_join={args.wait_join} load={args.load})")


if __name__ == "__main__":
    main()
