"""Cost in concurrency: N connections at once between two engines in this process, each with two
subflows, together moving the same total, for N = 1, 10, 100, 1000 (10,000 on request), over an
unimpaired emulated network of two paths (10 Gbit/s, 1 ms each way, 1500-byte MTU, queues
deeper than every window: no loss), so the machine, not the network, sets the pace.

    python bench/compare_concurrency.py                       # the active backend, 128 MiB
    python bench/compare_concurrency.py --n 1,10,100,1000,10000 --total 64M
    python bench/compare_concurrency.py --backend both        # each backend in its own process
    python bench/compare_concurrency.py --profile 1000        # cProfile of one N (the top 30)

Each connection sends TOTAL / N bytes of the seeded pattern from the client to the server
(``BulkApp``); every byte sent and received is hashed (SHA-256, both sides, inside the timed
run: ``--no-hash`` leaves it out) and every transfer is checked byte-exact afterwards. The
wall time runs from the first ``connect`` to the last byte's arrival: set-up included.

Printed per N: wall seconds, goodput (Mbit/s per wall second), its ratio to N = 1's, packets
sent (both engines), and the memory per idle connection: what tracemalloc sees the two engines
hold (both endpoints' share) after N connections were established with both subflows (one byte
sent on each, for the DATA_ACK that lets the client join) and their events read, over N (``--idle-max`` caps the N of that measure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from mptcp_fast.cli.main import _size  # the CLI's sizes: 128M, 1GiB, ...

C0, C1, S0, PORT = "198.18.0.1", "198.18.1.1", "198.18.0.2", 5000
RATE, DELAY, QUEUE = 10e9, 0.001, 256 << 20


def _config(n: int):
    from mptcp_fast.engine import Config
    # every handshake keeps its state (no SYN cookies: the figure is the engine's, not the
    # cookies'); TIME-WAIT short, as in the demo
    return Config(syn_backlog=max(256, 2 * n), time_wait=1.0)


def _network(n: int, client_host, server_host):
    from mptcp_fast.sim.netem import Network
    net = Network(seed=1)
    net.add_host(client_host, [C0, C1])
    net.add_host(server_host, [S0])
    for address in (C0, C1):
        net.add_path(address, S0, rate=RATE, delay=DELAY, queue=QUEUE)
    return net


def transfer(n: int, total: int, hash_data: bool) -> dict:
    """N connections move ``total`` bytes together; the figures of the run."""
    import hashlib
    from mptcp_fast.engine import Endpoint
    from mptcp_fast.sim.apps import BulkApp, pattern
    per = total // n
    client = BulkApp(Endpoint([C0, C1], _config(n)), send_bytes=per, hash_data=hash_data)
    server = BulkApp(Endpoint([S0], _config(n)), hash_data=hash_data)
    server.endpoint.listen(PORT)
    net = _network(n, client, server)
    started = time.perf_counter()
    conns = [client.open((S0, PORT), 0.0) for _ in range(n)]
    net.run(until=600.0, stop=lambda: server.ended >= n)
    wall = time.perf_counter() - started
    virtual = net.now
    net.run(until=net.now + 5.0)                         # the closing handshakes
    got = list(server.transfers.values())
    if len(got) != n or any(t.received != per or not t.eof for t in got):
        raise RuntimeError(f"N={n}: {sum(t.eof for t in got)} of {n} transfers complete")
    if hash_data:
        # every connection sends the same stream from its start: one expected digest
        source = pattern(1)
        block = len(source) // 2
        expected, done = hashlib.sha256(), 0
        while done < per:
            size = min(per - done, block)
            expected.update(memoryview(source)[done % block:done % block + size])
            done += size
        digest = expected.hexdigest()
        for t in client.transfers.values():
            if t.sent_hash.hexdigest() != digest:
                raise RuntimeError(f"N={n}: a connection sent other bytes than its stream")
        for t in got:
            if t.received_hash.hexdigest() != digest:
                raise RuntimeError(f"N={n}: a connection received other bytes than were sent")
    subflows = sum(len(c.all_subflows) for c in conns)
    return {"n": n, "per": per, "wall": wall, "virtual": virtual,
            "goodput_bps": per * n * 8 / wall,
            "packets": client.endpoint.packets_sent + server.endpoint.packets_sent,
            "subflows": subflows, "exact": hash_data}


def idle(n: int) -> dict:
    """Memory the two engines hold per idle established connection (two subflows each)."""
    import tracemalloc
    from mptcp_fast.engine import Endpoint
    client = Endpoint([C0, C1], _config(n))
    server = Endpoint([S0], _config(n))
    server.listen(PORT)
    net = _network(n, client, server)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    conns = [client.connect((S0, PORT), 0.0) for _ in range(n)]
    for conn in conns:             # one byte each: the server's DATA_ACK makes the client's
        conn.send(b"x")            # side fully established (RFC 8684 §3.1), so the join follows
    net.wake(client)
    net.run(until=0.5)
    for ep in (client, server):
        while ep.next_event() is not None:
            pass
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    established = sum(len(c.subflows) for c in conns)
    if len(server.connections) != n or established != 2 * n:
        raise RuntimeError(f"idle N={n}: {len(server.connections)} connections, "
                           f"{established} subflows")
    return {"n": n, "per_connection": (held - base) / n, "peak_per_connection": (peak - base) / n}


def child(args) -> dict:
    from mptcp_fast import BACKEND
    out = {"backend": BACKEND, "load": os.getloadavg()[0], "runs": [], "idle": []}
    for n in args.n:
        out["runs"].append(transfer(n, args.total, not args.no_hash))
    for n in args.n:
        if n <= args.idle_max:
            out["idle"].append(idle(n))
    return out


def show(result: dict, total: int) -> None:
    print(f"backend {result['backend']}: {total / 2**20:g} MiB in total, two subflows per "
          f"connection, two 10 Gbit/s 1 ms paths; load average {result['load']:.2f} at the start")
    idle_of = {r["n"]: r for r in result["idle"]}
    base = result["runs"][0]["goodput_bps"] if result["runs"] else 1.0
    print(f"  {'N':>6} {'wall s':>8} {'Mbit/s':>9} {'ratio':>6} {'packets':>10} "
          f"{'idle B/conn':>12}")
    for r in result["runs"]:
        mem = idle_of.get(r["n"])
        print(f"  {r['n']:>6} {r['wall']:8.2f} {r['goodput_bps'] / 1e6:9.0f} "
              f"{r['goodput_bps'] / base:6.2f} {r['packets']:>10,} "
              f"{'' if mem is None else format(mem['per_connection'], ',.0f'):>12}")
    print("  every transfer byte-exact (SHA-256 of each connection's stream, both sides)"
          if result["runs"] and result["runs"][0]["exact"] else
          "  byte counts checked (--no-hash: not hashed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="1,10,100,1000",
                        type=lambda s: [int(x) for x in s.split(",")],
                        help="connection counts, comma-separated (default 1,10,100,1000)")
    parser.add_argument("--total", type=_size, default=128 << 20,
                        help="bytes moved in total by all connections (default 128M)")
    parser.add_argument("--backend", choices=("active", "cython", "python", "both"),
                        default="active")
    parser.add_argument("--no-hash", action="store_true", help="do not hash the bytes")
    parser.add_argument("--idle-max", type=int, default=10_000,
                        help="measure idle memory only for N up to this")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="run N once under cProfile and print the top 30 (cumulative)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.profile:
        import cProfile
        import pstats
        from mptcp_fast import BACKEND
        prof = cProfile.Profile()
        prof.enable()
        r = transfer(args.profile, args.total, not args.no_hash)
        prof.disable()
        print(f"backend {BACKEND}, N={args.profile}: {r['wall']:.2f} s (under the profiler)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    if args.json:
        print(json.dumps(child(args)))
        return
    if args.backend == "active":
        show(child(args), args.total)
        return
    for backend in (("cython", "python") if args.backend == "both" else (args.backend,)):
        env = dict(os.environ)
        env.pop("MPTCP_FAST_PURE", None)
        if backend == "python":
            env["MPTCP_FAST_PURE"] = "1"
        command = [sys.executable, __file__, "--json", "--n", ",".join(map(str, args.n)),
                   "--total", str(args.total), "--idle-max", str(args.idle_max)]
        if args.no_hash:
            command.append("--no-hash")
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        show(json.loads(out.strip().splitlines()[-1]), args.total)


if __name__ == "__main__":
    main()
