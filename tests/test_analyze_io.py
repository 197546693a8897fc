"""What people chain the analyzer with: a capture on standard input, several
files on a process pool in one JSON document, the per-file function, Parquet tables that
agree with the JSON report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mptcp_fast import analysis
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE

CLI = [sys.executable, "-m", "mptcp_fast", "analyze"]


def _json(arguments, stdin=None):
    done = subprocess.run(CLI + arguments + ["--json"], input=stdin, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_standard_input_gives_the_same_report_as_the_file():
    with open(SHIPPED_CAPTURE, "rb") as f:
        piped = _json(["-"], stdin=f.read())
    direct = _json([SHIPPED_CAPTURE])
    assert piped.pop("capture") == "-" and direct.pop("capture") == SHIPPED_CAPTURE
    assert piped == direct and len(piped["connections"]) == 1


def test_several_files_on_two_processes(tmp_path):
    second = tmp_path / "copy.pcap"
    shutil.copy(SHIPPED_CAPTURE, second)
    both = _json([SHIPPED_CAPTURE, str(second), "--jobs", "2"])
    assert [r["capture"] for r in both["captures"]] == [SHIPPED_CAPTURE, str(second)]
    one = _json([SHIPPED_CAPTURE])
    for report in both["captures"]:
        report.pop("capture")
    one.pop("capture")
    assert both["captures"] == [one, one]


def test_analyze_file_reports_damage_instead_of_raising(tmp_path):
    cut = tmp_path / "cut.pcap"
    with open(SHIPPED_CAPTURE, "rb") as f:
        data = f.read()
    cut.write_bytes(data[:len(data) // 2 + 7])
    report = analysis.analyze_file(str(cut))
    assert report["capture"] == str(cut) and "error" in report
    assert report["packets"] > 0                              # what came before the damage
    missing = analysis.analyze_file(str(tmp_path / "none.pcap"))
    assert set(missing) == {"capture", "error"}


@pytest.mark.requires("pyarrow")
def test_parquet_tables_agree_with_the_json(tmp_path):
    import pyarrow.parquet as pq
    report = _json([SHIPPED_CAPTURE, "--parquet", str(tmp_path)])
    packets = pq.read_table(tmp_path / "packets.parquet").to_pylist()
    subflows = pq.read_table(tmp_path / "subflows.parquet").to_pylist()
    connections = pq.read_table(tmp_path / "connections.parquet").to_pylist()
    assert len(packets) == report["packets"]                   # every packet is MPTCP here
    assert [(r["connection"], r["subflow"]) for r in subflows] == [
        (c["connection"], i) for c in report["connections"]
        for i in range(1, len(c["subflows"]) + 1)]
    for row, s in zip(subflows, report["connections"][0]["subflows"]):
        assert (row["client"], row["server"], row["bytes_up"], row["bytes_down"]) == \
            (s["client"], s["server"], s["bytes"]["up"], s["bytes"]["down"])
        # the packets of that subflow carry at least the bytes the report counts for it
        for direction, counted in (("up", s["bytes"]["up"]), ("down", s["bytes"]["down"])):
            carried = sum(p["payload_len"] for p in packets if p["subflow"] == row["subflow"]
                          and p["direction"] == direction)
            assert carried >= counted
    (c,) = report["connections"]
    (row,) = connections
    assert row["up_sha256"] == c["streams"]["up"]["sha256"]
    assert row["down_data_fin"] == c["streams"]["down"]["data_fin"]
    assert row["subflows"] == len(c["subflows"]) and row["placed"] == c["placed"]
    first = packets[0]
    assert first["number"] == 1 and first["connection"] == 1 and first["direction"] == "up"


def _wait_until_read(proc, timeout: float) -> None:
    """Until ``proc`` has read every byte written to its standard input (a pipe): FIONREAD on
    either end of a Linux pipe is what the pipe still holds. Past that the reader is running
    its read loop, not starting up (a SIGINT during imports is a traceback, not a report)."""
    import fcntl
    import struct
    import termios
    import time
    end = time.monotonic() + timeout
    while True:
        held = struct.unpack("i", fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD,
                                              b"\0" * 4))[0]
        if held == 0:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < end, f"{held} bytes still unread after {timeout} s"
        time.sleep(0.02)


def test_ctrl_c_on_standard_input_reports_what_came():
    """tcpdump -w - | mptcp-fast analyze -, stopped with Ctrl-C: the report of the packets
    that arrived, marked interrupted, exit status 0 (a cut last record is expected then)."""
    import signal
    with open(SHIPPED_CAPTURE, "rb") as f:
        data = f.read()
    proc = subprocess.Popen(CLI + ["-", "--json"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(data[:len(data) // 2])
    proc.stdin.flush()
    _wait_until_read(proc, timeout=60)              # it read all, and waits for more
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["capture"] == "-" and report["interrupted"] is True
    whole = _json([SHIPPED_CAPTURE])
    assert 0 < report["packets"] < whole["packets"]
    assert len(report["connections"]) == 1
