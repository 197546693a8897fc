"""The mptcp-fast command line: decode tables, JSON, examples, malformed input."""

import json
import re
import time
import os
import subprocess
import sys

from mptcp_fast import _backend
from mptcp_fast.cli import decode as cli_decode, main as cli


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mptcp_fast", *args], capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})


def test_decode_json_of_a_kernel_dss(capsys):
    code = cli.main(["decode", "--json", "1e1c200f 43143b25bce216b2 9a915667704f8201 00000001 07d0 c3c8"])
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    (dss,) = result["options"]
    assert dss == {"offset": 0, "length": 28, "option": "DSS", "data_ack": 0x43143B25BCE216B2,
                   "ack64": True, "dsn": 0x9A915667704F8201, "dsn64": True, "subflow_seq": 1,
                   "data_len": 2000, "checksum": 0xC3C8, "data_fin": False}


def test_decode_table_with_colons_and_segment(capsys):
    assert cli.main(["decode", "--segment", "syn", "1e:04:01:81"]) == 0
    out = capsys.readouterr().out
    assert "MP_CAPABLE" in out and "flags=0x81" in out


def test_strict_segment_marks_what_linux_ignores(capsys):
    assert cli.main(["decode", "--segment", "ack", "--json", "1e0451000101"]) == 1  # v0 MP_PRIO
    (result,) = json.loads(capsys.readouterr().out)
    assert result["options"][0]["option"] == "MALFORMED"
    assert "MP_PRIO" in result["options"][0]["reason"]


def test_builtin_examples_are_the_main_job():
    proc = run_cli("decode")
    assert proc.returncode == 0, proc.stderr
    for title, _, _ in cli_decode.EXAMPLES:
        assert title in proc.stdout
    assert "token=0x081d2af6" in proc.stdout and "hmac=118607e7815b7f4d" in proc.stdout


def test_malformed_and_non_hex_input():
    proc = run_cli("decode", "1e0b3001")
    assert proc.returncode == 1 and "MALFORMED" in proc.stdout and "offset 1" in proc.stdout
    proc = run_cli("decode", "zz")
    assert proc.returncode != 0 and "not hex" in proc.stderr


def test_version_names_the_backend():
    from mptcp_fast import __version__
    forced_pure = os.environ.get("MPTCP_FAST_PURE", "") not in ("", "0")
    expected = "cython" if _backend.COMPILED_AVAILABLE and not forced_pure else "python"
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mptcp-fast {__version__} (backend: {expected})"
    forced = run_cli("--version", env={"MPTCP_FAST_PURE": "1"})
    assert forced.stdout.strip() == f"mptcp-fast {__version__} (backend: python)"


SHIPPED = {  # what the kernel endpoints hashed when the shipped capture was made
    "up": (40000, "76b6c153275b84a547a2f654c6887fcad34fdc3d463ecc816be085d16b7669ad"),
    "down": (45000, "c04d7f000e9acfdc3f3af1a0a07ac73d949cadc41fdaf75a199c589ccd529933"),
}


def test_analyze_the_shipped_capture(backend, capsys):
    assert cli.main(["analyze", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (conn,) = report["connections"]
    for direction, (size, digest) in SHIPPED.items():
        stream = conn["streams"][direction]
        assert (stream["bytes"], stream["sha256"], stream["complete"]) == (size, digest, True)
    assert conn["checksums"] and conn["anomalies"] == [] and len(conn["subflows"]) == 3
    assert [a["hmac"] for a in conn["add_addr"]] == ["valid"]
    # multipath both ways: data on at least two subflows in each direction
    for direction in ("up", "down"):
        assert sum(1 for s in conn["subflows"] if s["bytes"][direction]) >= 2


def test_analyze_table_and_missing_file(capsys):
    proc = run_cli("analyze")
    assert proc.returncode == 0 and "HMAC valid" in proc.stdout and "anomalies: none" in proc.stdout
    proc = run_cli("analyze", "/nonexistent.pcap")
    assert proc.returncode == 2 and "No such file" in proc.stderr


def test_progress_callback_and_silence_off_a_terminal(tmp_path):
    from mptcp_fast.analysis import analyze
    from mptcp_fast.analysis.analyzer import BATCH_PACKETS
    from pcapwriter import tcp_packet, write_pcap
    path = tmp_path / "many.pcap"
    count = 2 * BATCH_PACKETS + 7
    write_pcap(path, [tcp_packet(b"", sport=1000 + i % 50) for i in range(count)])
    seen = []
    report = analyze(path, progress=seen.append)
    assert report["packets"] == count and report["connections"] == []   # plain TCP only
    assert len(seen) == 3 and 0 < seen[0] < seen[1] < seen[2] < path.stat().st_size
    proc = run_cli("analyze")             # stderr is a pipe here: no progress bar at all
    assert proc.returncode == 0 and proc.stderr == ""


def test_a_port_out_of_range_is_an_argument_error_not_a_traceback(capsys):
    for argv, where in [(["connect", "198.18.0.77", "70000", "--engine", "kernel"], "port"),
                        (["serve", "--port", "-1"], "--port"),
                        (["proxy", "--listen", "9999999", "--to", "198.18.0.1:80"], "--listen"),
                        (["proxy", "--listen", "5000", "--to", "host:x"], "--to")]:
        try:
            cli.main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"mptcp-fast {argv[0]}: error: argument {where}: ")
        assert err.endswith(("a port is 0-65535, not 70000", "a port is 0-65535, not -1",
                             "a port is 0-65535, not 9999999", "not a port: 'x'"))


class _NobodyAnswers:
    """An engine whose connections are never answered (nobody at the address)."""

    def __init__(self, args):
        pass

    async def start(self):
        pass

    async def open(self, host, port):
        import asyncio
        await asyncio.Event().wait()

    def close(self):
        pass


def test_connect_to_nobody_says_how_long_it_waited(monkeypatch, capsys):
    from mptcp_fast.cli import net
    monkeypatch.setattr(net, "_Engine", _NobodyAnswers)
    assert cli.main(["connect", "198.18.0.77", "5000", "--timeout", "0.2"]) == 1
    assert capsys.readouterr().err == \
        "mptcp-fast connect: 198.18.0.77:5000: no answer within 0.2 s\n"
    assert cli.main(["connect", "2001:2::77", "5000", "--timeout", "0.1"]) == 1
    assert capsys.readouterr().err == \
        "mptcp-fast connect: [2001:2::77]:5000: no answer within 0.1 s\n"


def test_an_mp_capable_of_the_wrong_length_names_the_length_it_wanted():
    proc = run_cli("decode", "--segment", "syn", "--json", "1e0c0181aaaaaaaaaaaaaaaa")
    assert proc.returncode == 1
    (result,) = json.loads(proc.stdout)
    assert result["options"][0]["reason"] == ("MP_CAPABLE: length at offset 0: expected 4 "
                                              "bytes on a syn segment, got 12")
    proc = run_cli("decode", "--segment", "data", "--json", "1e0c0181aaaaaaaaaaaaaaaa")
    (result,) = json.loads(proc.stdout)
    assert "expected 22 or 24 bytes on a data segment, got 12" in result["options"][0]["reason"]


def test_nothing_to_decode_is_an_error_not_an_empty_table():
    for empty in ("", " ", "::"):
        proc = run_cli("decode", empty)
        assert (proc.returncode, proc.stdout) == (1, "")
        assert proc.stderr == "mptcp-fast decode: nothing to decode: the hex is empty\n"


def test_a_path_that_is_not_a_number_says_which_part():
    proc = run_cli("demo", "--path", "foo,10ms")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        "mptcp-fast demo: error: argument --path: a path is RATE,DELAY[,LOSS] (e.g. "
        "100M,10ms,0.5%): the rate 'foo' is not a number (e.g. 100M), in 'foo,10ms'")
    proc = run_cli("demo", "--path", "100M,soon")
    assert "the delay 'soon' is not a number (e.g. 10ms)" in proc.stderr


def _read_pty(master: int, seconds: float) -> bytes:
    """What a pseudo-terminal's other side wrote within ``seconds`` (until it closes)."""
    import select
    got, end = b"", time.monotonic() + seconds
    while time.monotonic() < end and select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:                          # EIO: the other side is closed
            break
        if not chunk:
            break
        got += chunk
    return got


def test_demo_shows_progress_on_a_terminal_and_ctrl_c_says_where_it_was():
    """On a terminal the demo draws a bar per run; Ctrl-C ends it with one line saying which
    run it was in and how far it got, exit status 130, no traceback."""
    import fcntl
    import pty
    import signal
    import struct
    import termios
    master, slave = pty.openpty()
    # a terminal of 24 x 100 (a pseudo-terminal starts at 0 x 0, where tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "mptcp_fast", "demo", "--size", "4G"],
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    try:
        seen, deadline = b"", time.monotonic() + 60
        while b"multipath:" not in seen:             # the bar is up: the transfer runs
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += _read_pty(master, 1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        seen += _read_pty(master, 2)
    finally:
        proc.kill()
        os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 130 and out == "", text
    assert re.search(r"mptcp-fast demo: interrupted during the multipath run, [\d,]+ of "
                     r"4,294,967,296 bytes delivered", text), text
    assert "Traceback" not in text


def test_demo_shows_no_bar_off_a_terminal():
    proc = run_cli("demo", "--size", "1M", "--no-alone")
    assert proc.returncode == 0 and proc.stderr == ""


def test_demo_preset_schedulers_sets_every_scheduler_side_by_side(capsys):
    """The preset's paths (50M,5ms and 10M,15ms) under a 192 KiB window, 4 MiB: lowest-rtt
    finishes after the fast path alone (head-of-line blocking behind the slow path),
    round-robin last; ECF and BLEST use the slow path only while the fast subflow's window
    is small, and finish no later than the fast path alone (docs/engine.md)."""
    assert cli.main(["demo", "--preset", "schedulers", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["size"], result["receive_window"]) == (4 << 20, 192 << 10)
    runs, alone = result["runs"], result["alone"]["completion_seconds"]
    assert list(runs) == ["lowest-rtt", "round-robin", "redundant", "ecf", "blest"]
    assert all(r["exact"] for r in runs.values())
    seconds = {name: r["completion_seconds"] for name, r in runs.items()}
    assert max(seconds["ecf"], seconds["blest"]) <= alone < seconds["lowest-rtt"] - 0.1
    assert seconds["round-robin"] > seconds["lowest-rtt"] + 0.5
    for name in ("ecf", "blest"):                  # the slow path: a start, at most 2 %
        fast, slow = (s["bytes"] for s in runs[name]["subflows"])
        assert fast + slow == 4 << 20 and 0 < slow < (4 << 20) // 50
    lowest_slow = runs["lowest-rtt"]["subflows"][1]["bytes"]
    assert lowest_slow > (4 << 20) // 10             # lowest-rtt: whatever the window allows
    redundant = [s["bytes"] for s in runs["redundant"]["subflows"]]
    assert redundant[0] == 4 << 20 and redundant[1] > 0
    assert cli.main(["demo", "--preset", "schedulers", "--size", "256k"]) == 0
    text = capsys.readouterr().out
    for name in runs:
        assert re.search(rf"^{name} +[\d.]+ s ", text, re.M), text
    assert "path 0 alone" in text and "every transfer byte-exact: yes" in text
