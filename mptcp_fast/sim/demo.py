"""``mptcp-fast demo``: a client and a server engine move data over emulated paths, and the same
transfer is repeated over each path alone, so the gain of multipath is a measured number.

    from mptcp_fast.sim import demo
    result = demo.run_demo(size=16 << 20, paths=demo.DEFAULT_PATHS, seed=1)
    result["multipath"]["goodput_bps"], result["alone"][0]["goodput_bps"]

Everything runs on the virtual clock of ``mptcp_fast.sim.netem`` (deterministic from the seed):
completion times are virtual; ``wall_seconds`` and ``processing_bps`` tell how fast this
machine ran the engines.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ..engine import Config, Endpoint
from .apps import BulkApp
from .netem import Network

__all__ = ["PathSpec", "DEFAULT_PATHS", "parse_path", "run_transfer", "run_demo",
           "run_schedulers", "SCHEDULER_PATHS", "SCHEDULER_WINDOW", "SCHEDULER_SIZE"]

SERVER = "198.18.0.2"
PORT = 5000


@dataclass(frozen=True)
class PathSpec:
    rate: float            # bits per second
    delay: float           # one-way propagation delay, seconds
    loss: float = 0.0      # random loss per packet

    def __str__(self):
        loss = f", {self.loss:.2%} loss" if self.loss else ""
        return f"{self.rate / 1e6:g} Mbit/s, {self.delay * 1e3:g} ms{loss}"


# A fast short path and a slower long one with a little loss: together they beat either alone.
# (With 0.5 % loss the long path gives a loss-based controller only ~2 Mbit/s, Mathis et al.'s
# MSS / (RTT sqrt(p)): too little to see, so the default loss is 0.05 %.)
DEFAULT_PATHS = (PathSpec(100e6, 0.010), PathSpec(50e6, 0.040, 0.0005))
SAMPLE_EVERY = 0.05                     # seconds of virtual time between throughput samples


def parse_path(text: str) -> PathSpec:
    """``RATE,DELAY[,LOSS]``: "100M,10ms", "50Mbit,40ms,0.5%", "2e7,0.02,0.001"."""
    parts = [p.strip() for p in text.split(",")]
    if not 2 <= len(parts) <= 3:
        raise ValueError(f"a path is RATE,DELAY[,LOSS], got {text!r}")

    def number(what: str, value: str, units: dict, example: str) -> float:
        lowered = value.lower()
        scale = 1.0
        for suffix, factor in units.items():
            if lowered.endswith(suffix):
                lowered, scale = lowered[:-len(suffix)], factor
                break
        try:
            return float(lowered) * scale
        except ValueError:
            raise ValueError(f"a path is RATE,DELAY[,LOSS] (e.g. 100M,10ms,0.5%): the {what} "
                             f"{value!r} is not a number (e.g. {example}), in {text!r}") from None
    rate = number("rate", parts[0], {"gbit/s": 1e9, "mbit/s": 1e6, "kbit/s": 1e3, "gbit": 1e9,
                                     "mbit": 1e6, "kbit": 1e3, "g": 1e9, "m": 1e6, "k": 1e3},
                  "100M")
    delay = number("delay", parts[1], {"ms": 1e-3, "us": 1e-6, "s": 1.0}, "10ms")
    loss = number("loss", parts[2], {"%": 0.01}, "0.5%") if len(parts) == 3 else 0.0
    if rate <= 0 or delay < 0 or not 0 <= loss < 1:
        raise ValueError(f"a path needs rate > 0, delay >= 0 and loss in [0, 1): {text!r}")
    return PathSpec(rate, delay, loss)


def _client_address(i: int) -> str:
    return f"198.18.{i}.1"


def run_transfer(size: int, paths, *, scheduler="lowest-rtt", cc="lia", seed=1,
                 checksums=False, pcap=None, hash_data=True, until=3600.0,
                 queue: int = 256 * 1024, profile: str = "v1", offload: bool = False,
                 progress=None, receive_window: int | None = None,
                 rx_coalesce: float = 0.0) -> dict:
    """One connection moves ``size`` bytes from the client to the server over ``paths`` (one
    client address per path, one server address; ``queue`` bytes of drop-tail queue per path
    direction); returns what happened. ``progress(delivered)``, if given, is called with the
    bytes the server has received every SAMPLE_EVERY seconds of virtual time.
    ``receive_window`` fixes the server's receive window (bytes; default: Config's, which
    starts at 512 KiB and grows to 4 MiB as the server reads). ``rx_coalesce``: the seconds
    both hosts' NICs coalesce received packets for (``Network.add_host``; 0: none)."""
    config = Config(scheduler=scheduler, congestion_control=cc, checksums=checksums,
                    time_wait=1.0, profile=profile, offload=offload)
    server_config = config if receive_window is None else dataclasses.replace(
        config, receive_window=receive_window, initial_receive_window=receive_window)
    addresses = [_client_address(i) for i in range(len(paths))]
    net = Network(seed=seed, pcap=pcap)
    client = BulkApp(Endpoint(addresses, config), send_bytes=size, seed=seed,
                     hash_data=hash_data)
    server = BulkApp(Endpoint([SERVER], server_config), hash_data=hash_data)
    server.endpoint.listen(PORT)
    net.add_host(client, addresses, rx_coalesce=rx_coalesce)
    net.add_host(server, [SERVER], rx_coalesce=rx_coalesce)
    for address, spec in zip(addresses, paths):
        net.add_path(address, SERVER, rate=spec.rate, delay=spec.delay, loss=spec.loss,
                     queue=queue, offload=offload)
    conn = client.open((SERVER, PORT), 0.0)
    samples = []                          # (time, {client address: bytes the server got})

    def sample():
        got = {}
        for t in server.transfers.values():
            for sf in t.conn.all_subflows:
                key = _text(sf.remote)
                got[key] = got.get(key, 0) + sf.bytes_received
        samples.append((net.now, got))
        if progress is not None:
            progress(sum(got.values()))
        if not any(t.eof for t in server.transfers.values()):
            net.schedule(net.now + SAMPLE_EVERY, sample)
    net.schedule(0.0, sample)
    started = time.perf_counter()
    net.run(until=until, stop=server.peer_ended)        # checked after every event: cheap
    finished = net.now
    wall = time.perf_counter() - started
    sample()
    net.run(until=finished + 5.0)                # the close handshakes, for the capture
    net.close()
    received = next(iter(server.transfers.values()), None)
    sent = client.transfers[conn.id]
    if received is None or received.received != size:
        raise RuntimeError(f"the transfer did not complete within {until} s of virtual time")
    done = received.eof_at - sent.established_at
    subflows = []
    for sf in conn.all_subflows:
        subflows.append({
            "id": sf.sid, "local": str(_text(sf.local)), "remote": str(_text(sf.remote)),
            "bytes": sf.bytes_sent, "retransmits": sf.stats_retransmits,
            "share": sf.bytes_sent / max(1, sum(s.bytes_sent for s in conn.all_subflows)),
            "goodput_bps": sf.bytes_sent * 8 / done if done > 0 else 0.0,
            "srtt": sf.srtt,
        })
    return {
        "size": size, "completion_seconds": done,
        "goodput_bps": size * 8 / done if done > 0 else 0.0,
        "exact": received.received_hash.hexdigest() == sent.sent_hash.hexdigest()
        if hash_data else None,
        "sha256": received.received_hash.hexdigest() if hash_data else None,
        "subflows": subflows, "reinjected_bytes": conn.reinjected_bytes,
        "wall_seconds": wall, "processing_bps": size * 8 / wall if wall > 0 else 0.0,
        "packets": client.endpoint.stats["packets_sent"] + server.endpoint.stats["packets_sent"],
        "samples": samples,
    }


def _text(address: bytes) -> str:
    import ipaddress
    return str(ipaddress.ip_address(address))


def run_demo(size: int = 16 << 20, paths=DEFAULT_PATHS, *, scheduler="lowest-rtt", cc="lia",
             seed=1, checksums=False, pcap=None, alone=True, profile="v1",
             progress=None, receive_window: int | None = None) -> dict:
    """The multipath transfer, and (``alone``) the same transfer over each path by itself.
    ``progress(run, delivered)``: ``run`` is "multipath" or "path N alone", ``delivered`` the
    bytes its server has received so far (of ``size``)."""
    def reporter(run: str):
        return None if progress is None else (lambda delivered: progress(run, delivered))
    multipath = run_transfer(size, paths, scheduler=scheduler, cc=cc, seed=seed,
                             checksums=checksums, pcap=pcap, profile=profile,
                             progress=reporter("multipath"), receive_window=receive_window)
    result = {"paths": [str(p) for p in paths], "scheduler": scheduler, "cc": cc, "seed": seed,
              "receive_window": receive_window, "multipath": multipath, "alone": []}
    if alone:
        for i, spec in enumerate(paths):
            result["alone"].append(run_transfer(size, [spec], scheduler=scheduler, cc=cc,
                                                seed=seed, checksums=checksums, profile=profile,
                                                progress=reporter(f"path {i} alone"),
                                                receive_window=receive_window))
    return result


# ``mptcp-fast demo --preset schedulers``: a fast path and a slower one under a receive window
# (192 KiB) that the slow path's segments can block: lowest-rtt gives the slow subflow data
# whenever it is idle and finishes later than the fast path alone (head-of-line blocking),
# round-robin gives it every other segment and goes at its pace, ECF uses it only while the
# backlog is done sooner with it (and wins), BLEST's estimate keeps it off the slow path,
# redundant sends everything on both (the fast copy arrives first).
SCHEDULER_PATHS = (PathSpec(50e6, 0.005), PathSpec(10e6, 0.015))
SCHEDULER_WINDOW = 192 << 10
SCHEDULER_SIZE = 4 << 20
SCHEDULER_ORDER = ("lowest-rtt", "round-robin", "redundant", "ecf", "blest")


def run_schedulers(size: int = SCHEDULER_SIZE, paths=SCHEDULER_PATHS, *,
                   receive_window: int | None = SCHEDULER_WINDOW, cc="lia", seed=1,
                   profile="v1", progress=None) -> dict:
    """The same transfer with each scheduler (SCHEDULER_ORDER), then over the first path
    alone. ``progress(run, delivered)``: ``run`` is the scheduler's name or "path 0 alone"."""
    def reporter(run: str):
        return None if progress is None else (lambda delivered: progress(run, delivered))
    runs = {}
    for name in SCHEDULER_ORDER:
        runs[name] = run_transfer(size, paths, scheduler=name, cc=cc, seed=seed,
                                  profile=profile, receive_window=receive_window,
                                  progress=reporter(name))
    alone = run_transfer(size, paths[:1], cc=cc, seed=seed, profile=profile,
                         receive_window=receive_window, progress=reporter("path 0 alone"))
    return {"paths": [str(p) for p in paths], "receive_window": receive_window, "size": size,
            "cc": cc, "seed": seed, "runs": runs, "alone": alone}


def throughput_series(samples) -> dict:
    """{client address: [(time, bits per second received over the interval ending then)]}."""
    series: dict[str, list[tuple[float, float]]] = {}
    for (t0, before), (t1, after) in zip(samples, samples[1:]):
        if t1 <= t0:
            continue
        for sid, total in after.items():
            rate = (total - before.get(sid, 0)) * 8 / (t1 - t0)
            series.setdefault(sid, []).append((t1, rate))
    return series


def plot(result: dict, path: str) -> None:
    """Throughput per subflow over time (PNG); needs matplotlib (``mptcp_fast[plot]``)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'mptcp_fast[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    multipath = result["multipath"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = throughput_series(multipath["samples"])
    for sub in multipath["subflows"]:
        points = series.get(sub["local"], [])
        ax.plot([t for t, _ in points], [r / 1e6 for _, r in points],
                label=f"subflow {sub['id']}: {sub['local']} -> {sub['remote']}")
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("throughput received (Mbit/s)")
    ax.set_title(f"MPTCP demo: {multipath['size'] / 2**20:g} MiB, {result['scheduler']}, "
                 f"{result['cc']}")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
