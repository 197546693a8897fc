"""Cost in concurrency: N connections at once between two engines in this process, each with two
subflows, together moving the same total, for N = 1, 10, 100, 1000 (10,000 on request), over an
unimpaired emulated network of two paths (10 Gbit/s, 1 ms each way, 1500-byte MTU, queues
deeper than every window: no loss), so the machine, not the network, sets the pace.

    python bench/compare_concurrency.py                       # the active backend, 128 MiB
    python bench/compare_concurrency.py --n 1,10,100,1000,10000 --total 64M
    python bench/compare_concurrency.py --backend both        # each backend in its own process
    python bench/compare_concurrency.py --profile 1000        # cProfile of one N (the top 30)
    python bench/compare_concurrency.py --rounds 5            # each N in a fresh process, 5 times
    python bench/compare_concurrency.py --n 1,1000 --instructions   # callgrind's count per N
    python bench/compare_concurrency.py --rx-coalesce 20e-6   # NICs coalescing 20 us

With ``--rounds R`` every N runs R times, each time in a process of its own (the order N = 1,
10, ... repeated R times, so that a slow minute of the machine falls on every N alike), and
the fastest run of each N is shown with the range of the R walls. On this shared 2-core
machine the same run varies by up to half from one process to the next; the best of several
is the figure to compare, the ratio one of best against best.

Each connection sends TOTAL / N bytes of the seeded pattern from the client to the server
(``BulkApp``); every byte sent and received is hashed (SHA-256, both sides, inside the timed
run: ``--no-hash`` leaves it out) and every transfer is checked byte-exact afterwards. The
wall time runs from the first ``connect`` to the last byte's arrival: set-up included.

Printed per N: wall seconds, goodput (Mbit/s per wall second), its ratio to N = 1's, packets
sent (both engines), the most bytes the paths' queues held at once (client to server, both
paths: with N connections in slow start they hold most of the transfer, whose every byte is
then out of the processor's caches when it arrives), and the memory per idle connection: what
tracemalloc sees the two engines hold (both endpoints' share) after N connections were
established with both subflows (one byte sent on each, for the DATA_ACK that lets the client
join) and their events read, over N (``--idle-max`` caps the N of that measure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from mptcp_fast.cli.main import _size  # the CLI's sizes: 128M, 1GiB, ...

C0, C1, S0, PORT = "198.18.0.1", "198.18.1.1", "198.18.0.2", 5000
RATE, DELAY, QUEUE = 10e9, 0.001, 256 << 20
RX_COALESCE = 0.0          # --rx-coalesce: both hosts' NICs (Network.add_host's rx_coalesce)


def _config(n: int):
    from mptcp_fast.engine import Config
    # every handshake keeps its state (no SYN cookies: the figure is the engine's, not the
    # cookies'); TIME-WAIT short, as in the demo
    return Config(syn_backlog=max(256, 2 * n), time_wait=1.0)


def _network(n: int, client_host, server_host):
    from mptcp_fast.sim.netem import Network
    net = Network(seed=1)
    net.add_host(client_host, [C0, C1], rx_coalesce=RX_COALESCE)
    net.add_host(server_host, [S0], rx_coalesce=RX_COALESCE)
    paths = [net.add_path(address, S0, rate=RATE, delay=DELAY, queue=QUEUE)
             for address in (C0, C1)]
    return net, paths


def transfer(n: int, total: int, hash_data: bool) -> dict:
    """N connections move ``total`` bytes together; the figures of the run."""
    import hashlib
    from mptcp_fast.engine import Endpoint
    from mptcp_fast.sim.apps import BulkApp, pattern
    per = total // n
    client = BulkApp(Endpoint([C0, C1], _config(n)), send_bytes=per, hash_data=hash_data)
    server = BulkApp(Endpoint([S0], _config(n)), hash_data=hash_data)
    server.endpoint.listen(PORT)
    net, paths = _network(n, client, server)
    conns: list = []

    def timed():
        conns.extend(client.open((S0, PORT), 0.0) for _ in range(n))
        net.run(until=600.0, stop=lambda: server.ended >= n)
        yield 0.0

    started = time.perf_counter()
    math.fsum(timed())          # the timed part inside math.fsum: what --instructions counts
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
    # the most the network held waiting for its links, client to server (both paths): with
    # N connections in slow start and queues deeper than every window, the whole transfer
    queued = sum(path.stats(address).peak_queue_bytes for path, address in zip(paths, (C0, C1)))
    return {"n": n, "per": per, "wall": wall, "virtual": virtual,
            "goodput_bps": per * n * 8 / wall,
            "packets": client.endpoint.packets_sent + server.endpoint.packets_sent,
            "subflows": subflows, "exact": hash_data, "peak_queued": queued}


def idle(n: int) -> dict:
    """Memory the two engines hold per idle established connection (two subflows each)."""
    import tracemalloc
    from mptcp_fast.engine import Endpoint
    client = Endpoint([C0, C1], _config(n))
    server = Endpoint([S0], _config(n))
    server.listen(PORT)
    net, _ = _network(n, client, server)
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


def best_of(results: list) -> dict:
    """One result of several rounds: each N's fastest run, with every round's wall kept
    (``walls``), the first round's idle measures and load."""
    out = {"backend": results[0]["backend"], "load": results[0]["load"], "runs": [],
           "idle": results[0]["idle"], "rounds": len(results)}
    for n in [r["n"] for r in results[0]["runs"]]:
        runs = [r for result in results for r in result["runs"] if r["n"] == n]
        fastest = dict(min(runs, key=lambda r: r["wall"]))
        fastest["walls"] = sorted(r["wall"] for r in runs)
        out["runs"].append(fastest)
    return out


def show(result: dict, total: int) -> None:
    rounds = result.get("rounds", 1)
    print(f"backend {result['backend']}: {total / 2**20:g} MiB in total, two subflows per "
          f"connection, two 10 Gbit/s 1 ms paths"
          + (f", NICs coalescing {RX_COALESCE * 1e6:g} us" if RX_COALESCE else "")
          + f"; load average {result['load']:.2f} at the start"
          + (f"; the fastest of {rounds} rounds, each N in a process of its own"
             if rounds > 1 else ""))
    idle_of = {r["n"]: r for r in result["idle"]}
    base = result["runs"][0]["goodput_bps"] if result["runs"] else 1.0
    print(f"  {'N':>6} {'wall s':>8} {'Mbit/s':>9} {'ratio':>6} {'packets':>10} "
          f"{'idle B/conn':>12} {'queued MB':>10}"
          + (f" {'walls of the rounds':>20}" if rounds > 1 else ""))
    for r in result["runs"]:
        mem = idle_of.get(r["n"])
        walls = "  " + " ".join(f"{w:.2f}" for w in r["walls"]) if rounds > 1 else ""
        print(f"  {r['n']:>6} {r['wall']:8.2f} {r['goodput_bps'] / 1e6:9.0f} "
              f"{r['goodput_bps'] / base:6.2f} {r['packets']:>10,} "
              f"{'' if mem is None else format(mem['per_connection'], ',.0f'):>12} "
              f"{r['peak_queued'] / 1e6:10.1f}{walls}")
    print("  every transfer byte-exact (SHA-256 of each connection's stream, both sides)"
          if result["runs"] and result["runs"][0]["exact"] else
          "  byte counts checked (--no-hash: not hashed)")


def show_instructions(args) -> None:
    """Each N's timed part (set-up and transfer) counted by callgrind in a process of its
    own: a count the machine's load does not move, against which the wall clock's ratio
    shows what the instructions do not (the caches, the collector's walks)."""
    from count_instructions import callgrind    # (bench/: this script's directory)
    from mptcp_fast import BACKEND
    print(f"backend {BACKEND}: instructions of the timed part (callgrind), "
          f"{args.total / 2**20:g} MiB in total")
    print(f"  {'N':>6} {'instructions':>16} {'/ N = 1':>8} {'packets':>10} {'per packet':>11}")
    base = None
    for n in args.n:
        command = [os.path.abspath(__file__), "--json", "--n", str(n), "--total",
                   str(args.total), "--idle-max", "0", "--rx-coalesce", repr(args.rx_coalesce)] \
            + (["--no-hash"] if args.no_hash else [])
        count, out = callgrind(None, command, ["math_fsum"])
        run = json.loads(out.strip().splitlines()[-1])["runs"][0]
        base = base or count
        print(f"  {n:>6} {count:>16,} {count / base:8.2f} {run['packets']:>10,} "
              f"{count / run['packets']:11,.0f}")


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every N this many times, each in a fresh process, and show "
                             "the fastest (default 1: all N in one process)")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="run N once under cProfile and print the top 30 (cumulative)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the instructions of each N's timed part (callgrind; "
                             "minutes per N)")
    parser.add_argument("--rx-coalesce", type=float, default=0.0, metavar="SECONDS",
                        help="both hosts' NICs coalesce received packets this long (0: none)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    global RX_COALESCE
    RX_COALESCE = args.rx_coalesce
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
    if args.instructions:
        show_instructions(args)
        return
    if args.backend == "active" and args.rounds <= 1:
        show(child(args), args.total)
        return
    if args.backend == "active":
        from mptcp_fast import BACKEND
        backends: tuple = (BACKEND,)
    else:
        backends = ("cython", "python") if args.backend == "both" else (args.backend,)
    for backend in backends:
        env = dict(os.environ)
        env.pop("MPTCP_FAST_PURE", None)
        if backend == "python":
            env["MPTCP_FAST_PURE"] = "1"

        def run_child(ns: list, idle_max: int) -> dict:
            command = [sys.executable, __file__, "--json", "--n", ",".join(map(str, ns)),
                       "--total", str(args.total), "--idle-max", str(idle_max),
                       "--rx-coalesce", repr(args.rx_coalesce)]
            if args.no_hash:
                command.append("--no-hash")
            out = subprocess.run(command, env=env, check=True, capture_output=True,
                                 text=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        if args.rounds <= 1:
            show(run_child(args.n, args.idle_max), args.total)
            continue
        rounds = []
        for round_ in range(args.rounds):
            # each N alone in a fresh process; the idle memory once, in the first round
            parts = [run_child([n], args.idle_max if round_ == 0 else 0) for n in args.n]
            rounds.append({"backend": parts[0]["backend"], "load": parts[0]["load"],
                           "runs": [r for p in parts for r in p["runs"]],
                           "idle": [i for p in parts for i in p["idle"]]})
        show(best_of(rounds), args.total)


if __name__ == "__main__":
    main()
