"""``mptcp-fast analyze`` as a user meets it on damaged input, with outputs, and under Ctrl-C:
the command run as a subprocess (on a pseudo-terminal where a terminal matters), judged by
its exit status, its exact lines and the files it leaves.

A cut capture (``head -c N`` of a real one, as when tcpdump is killed mid-write) gives, in
every mode, the report of what came before the damage, one line naming the file and the
damage on stderr, the outputs of that partial report, and exit status 2; a file that is not
a capture gives its error line only. Ctrl-C ends the command with one line saying what was
done so far, exit status 130, and no process of its own left behind."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from mptcp_fast import analysis
from mptcp_fast.cli.analyze import SHIPPED_CAPTURE, _print_report

from pcapwriter import tcp_packet, write_pcap

CLI = [sys.executable, "-m", "mptcp_fast", "analyze"]

# the shipped capture cut at byte 100,000 (the record at 99,324 is cut) and a stub of its
# first 3,000 bytes: where each one's damage is, and how many TCP packets came before it
CUT = ("cut.pcap", 100_000, 129,
       "capture truncated at byte 99324: the record data needs 1520 bytes, 676 left")
STUB = ("stub.pcap", 3_000, 14,
        "capture truncated at byte 2948: the record data needs 1520 bytes, 52 left")
PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ["connection1-delivery.png", "connection1-sequence.png",
           "connection1-throughput.png"]


def _env(backend: str) -> dict:
    return {**os.environ, "MPTCP_FAST_PURE": "1" if backend == "python" else "0"}


def _run(arguments, backend, cwd, stdin=None):
    return subprocess.run(CLI + arguments, input=stdin, capture_output=True, cwd=cwd,
                          env=_env(backend), timeout=300)


def _damaged(tmp_path, kind) -> tuple:
    """A damaged copy of the shipped capture in ``tmp_path``: (name, packets, error)."""
    name, size, packets, error = kind
    with open(SHIPPED_CAPTURE, "rb") as f:
        (tmp_path / name).write_bytes(f.read(size))
    return name, packets, error


def _text_report(report: dict, name: str) -> str:
    """What ``analyze`` prints for ``report`` (the library's) on the terminal."""
    out = io.StringIO()
    print(f"{name}:", file=out)
    _print_report(report, out)
    return out.getvalue()


def _lines(data: bytes) -> list:
    return data.decode().splitlines()


# -- damaged input, in every mode

MODES = {
    "plain": [], "json": ["--json"], "timing": ["--timing"], "plot": ["--plot", "plots"],
    "parquet": ["--parquet", "tables"], "dump-stream": ["--dump-stream", "streams"],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_cut_capture_gives_the_partial_report_in_every_mode(tmp_path, backend, mode):
    if mode == "parquet":
        pytest.importorskip("pyarrow")
    name, packets, error = _damaged(tmp_path, CUT)
    partial = analysis.analyze_file(str(tmp_path / name))
    assert partial.pop("error") == error and partial["packets"] == packets
    done = _run([name, *MODES[mode]], backend, tmp_path)
    assert done.returncode == 2
    assert _lines(done.stderr) == [f"mptcp-fast analyze: {name}: {error}"]
    if mode == "json":
        assert json.loads(done.stdout) == {**partial, "capture": name, "error": error}
        return
    out = done.stdout.decode()
    before = " of the packets before the damage"
    if mode == "plain":
        assert out == _text_report(partial, name)
    elif mode == "timing":
        assert out.startswith(f"{name}:\n{packets} TCP packets") and "subflow 1 RTT" in out
    elif mode == "plot":
        assert out.endswith(f"\nfigures: 3 PNG files in plots,{before}\n")
        assert sorted(os.listdir(tmp_path / "plots")) == FIGURES
        for figure in FIGURES:
            assert (tmp_path / "plots" / figure).read_bytes()[:8] == PNG
    elif mode == "parquet":
        import pyarrow.parquet as pq
        assert out.endswith(f"\ntables: 3 Parquet files in tables,{before}\n")
        assert pq.read_table(tmp_path / "tables" / "packets.parquet").num_rows == packets
    else:
        assert out.endswith(f"\nstreams: 2 files in streams,{before}\n")
        up = (tmp_path / "streams" / "connection1-up.bin").read_bytes()
        (conn,) = partial["connections"]
        assert hashlib.sha256(up).hexdigest() == conn["streams"]["up"]["sha256"]


def test_a_stub_and_standard_input_give_the_partial_report(tmp_path, backend):
    name, packets, error = _damaged(tmp_path, STUB)
    done = _run([name, "--plot", "plots", "--json"], backend, tmp_path)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["error"] == error and report["packets"] == packets
    # the outputs' lines go to stderr when stdout carries the JSON
    assert _lines(done.stderr) == [f"mptcp-fast analyze: {name}: {error}",
                                   "figures: 3 PNG files in plots, of the packets before the "
                                   "damage"]
    piped = _run(["-"], backend, tmp_path, stdin=(tmp_path / name).read_bytes())
    assert piped.returncode == 2
    assert _lines(piped.stderr) == [f"mptcp-fast analyze: -: {error}"]
    partial = analysis.analyze_file(str(tmp_path / name))
    del partial["error"]
    assert piped.stdout.decode() == _text_report(partial, "-")


def test_several_files_on_processes_with_bad_ones_do_the_others(tmp_path, backend):
    """Five files on two processes, two of them bad: every good file's report, figures and
    tables; the cut one's of what came before its damage; the text file's error line only
    (no directory left for it); exit status 2 at the end."""
    pytest.importorskip("pyarrow")
    cut, _, cut_error = _damaged(tmp_path, CUT)
    (tmp_path / "notes.txt").write_text("not a capture\n")
    good = [f"good{i}.pcap" for i in range(3)]
    for name in good:
        shutil.copy(SHIPPED_CAPTURE, tmp_path / name)
    names = [good[0], cut, "notes.txt", good[1], good[2]]
    done = _run([*names, "--jobs", "2", "--plot", "plots", "--parquet", "tables", "--json"],
                backend, tmp_path)
    assert done.returncode == 2
    reports = json.loads(done.stdout)["captures"]
    assert [r["capture"] for r in reports] == names
    assert [r.get("error") for r in reports] == [
        None, cut_error, "not a pcap or pcapng file at byte 0 (magic 6e6f7420)", None, None]
    assert reports[2] == {"capture": "notes.txt",
                          "error": "not a pcap or pcapng file at byte 0 (magic 6e6f7420)"}
    whole = analysis.analyze_file(SHIPPED_CAPTURE)
    for report in (reports[0], reports[3], reports[4]):
        assert report["packets"] == whole["packets"] and "timing" in report["connections"][0]
    for name in (good[0], cut, good[1], good[2]):
        assert sorted(os.listdir(tmp_path / "plots" / name)) == FIGURES
        assert sorted(os.listdir(tmp_path / "tables" / name)) == [
            "connections.parquet", "packets.parquet", "subflows.parquet"]
    assert not (tmp_path / "plots" / "notes.txt").exists()
    assert not (tmp_path / "tables" / "notes.txt").exists()
    errors = [line for line in _lines(done.stderr) if line.startswith("mptcp-fast")]
    assert errors == [f"mptcp-fast analyze: {cut}: {cut_error}",
                      "mptcp-fast analyze: notes.txt: not a pcap or pcapng file at byte 0 "
                      "(magic 6e6f7420); no figures or tables written"]


def test_a_file_that_is_not_a_capture_gets_its_error_line_only(tmp_path, backend):
    (tmp_path / "notes.txt").write_text("not a capture\n")
    error = "not a pcap or pcapng file at byte 0 (magic 6e6f7420)"
    done = _run(["notes.txt"], backend, tmp_path)
    assert (done.returncode, done.stdout) == (2, b"")
    assert _lines(done.stderr) == [f"mptcp-fast analyze: notes.txt: {error}"]
    done = _run(["notes.txt", "--json"], backend, tmp_path)
    assert json.loads(done.stdout) == {"capture": "notes.txt", "error": error}
    done = _run(["notes.txt", "--plot", "plots"], backend, tmp_path)
    assert (done.returncode, done.stdout) == (2, b"")
    assert _lines(done.stderr) == [f"mptcp-fast analyze: notes.txt: {error}; no figures "
                                   "written"]
    assert os.listdir(tmp_path / "plots") == []
    # a capture cut before its first record holds nothing to report either
    with open(SHIPPED_CAPTURE, "rb") as f:
        (tmp_path / "header.pcap").write_bytes(f.read(30))
    done = _run(["header.pcap", "--json"], backend, tmp_path)
    assert json.loads(done.stdout) == {
        "capture": "header.pcap",
        "error": "capture truncated at byte 24: record header needs 16 bytes, 6 left"}


def test_a_cut_capture_without_handshakes_still_finds_its_connections(tmp_path, backend):
    """tcpdump started mid-transfer and killed mid-write: the flows without handshakes are
    placed from what came before the damage (the second read stops where the first did)."""
    from test_midstream import _cut, _two_connections
    from enginenet import C0, C1, S0
    full, midstream = tmp_path / "full.pcap", tmp_path / "midstream.pcap"
    _two_connections(full, [C0, C1], S0)
    _cut(full, midstream, 2000)
    data = midstream.read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:len(data) // 2])
    report = analysis.analyze_file(str(tmp_path / "cut.pcap"))
    assert report["error"].startswith("capture truncated at byte ")
    assert len(report["connections"]) == 2
    assert all(c["placed"].startswith("without handshakes") for c in report["connections"])


# -- output directories

@pytest.mark.parametrize("option", ["--plot", "--parquet", "--dump-stream"])
def test_an_output_directory_that_cannot_be_made_is_one_line_before_reading(tmp_path, option):
    """Checked before the capture is read: the capture here is a FIFO nobody writes to, which
    a read would wait on for ever."""
    os.mkfifo(tmp_path / "nobody.pcap")
    done = subprocess.run(CLI + ["nobody.pcap", option, "/proc/x"], capture_output=True,
                          cwd=tmp_path, timeout=120)
    assert (done.returncode, done.stdout) == (2, b"")
    assert _lines(done.stderr) == [f"mptcp-fast analyze: {option} /proc/x: cannot create the "
                                   "directory: No such file or directory"]
    (tmp_path / "a-file").write_text("")
    done = subprocess.run(CLI + ["nobody.pcap", option, "a-file"], capture_output=True,
                          cwd=tmp_path, timeout=120)
    assert _lines(done.stderr) == [f"mptcp-fast analyze: {option} a-file: not a directory"]


def test_the_outputs_say_where_they_went(tmp_path):
    pytest.importorskip("pyarrow")
    shutil.copy(SHIPPED_CAPTURE, tmp_path / "k.pcap")
    wanted = ["k.pcap", "--plot", "out/plots", "--parquet", "out/tables", "--dump-stream",
              "out/streams"]
    lines = ["figures: 3 PNG files in out/plots", "tables: 3 Parquet files in out/tables",
             "streams: 2 files in out/streams"]
    done = _run(wanted, "cython", tmp_path)
    assert done.returncode == 0 and done.stderr == b""
    assert _lines(done.stdout)[-3:] == lines
    done = _run(wanted + ["--json"], "cython", tmp_path)
    assert done.returncode == 0 and _lines(done.stderr) == lines
    assert json.loads(done.stdout)["capture"] == "k.pcap"


# -- on a terminal, and Ctrl-C

def _read_pty(master: int, seconds: float) -> bytes:
    """What a pseudo-terminal's other side wrote within ``seconds`` (until it closes)."""
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


def _terminal():
    """A pseudo-terminal of 24 x 100 (one starts at 0 x 0, where tqdm draws nothing):
    (master, slave)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def _descendants(pid: int) -> list:
    """The processes ``pid`` started, and theirs (/proc's children lists)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(child) for child in f.read().split()]
        except FileNotFoundError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _gone(pids) -> bool:
    """None of ``pids`` runs (nor waits to be reaped) any more."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return False
        except FileNotFoundError:
            pass
    return True


def test_the_figures_show_a_bar_on_a_terminal_only(tmp_path):
    shutil.copy(SHIPPED_CAPTURE, tmp_path / "k.pcap")
    master, slave = _terminal()
    proc = subprocess.Popen(CLI + ["k.pcap", "--plot", "plots"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    try:
        out, _ = proc.communicate(timeout=120)
        seen = _read_pty(master, 2).decode(errors="replace")
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0
    assert "figures:   0%" in seen and "0/3" in seen, seen
    assert _lines(out)[-1] == "figures: 3 PNG files in plots"
    # with --json on a terminal: no bar, and the line on stderr
    master, slave = _terminal()
    proc = subprocess.Popen(CLI + ["k.pcap", "--plot", "plots", "--json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    try:
        proc.communicate(timeout=120)
        seen = _read_pty(master, 2).decode(errors="replace")
    finally:
        proc.kill()
        os.close(master)
    assert seen == "figures: 3 PNG files in plots\r\n"
    # off a terminal: test_the_outputs_say_where_they_went (nothing on stderr)


def _interrupted(proc, seen=b"", master=None) -> tuple:
    """SIGINT to ``proc``, then what it printed: (stdout, stderr or the terminal's text)."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if master is not None:
        err = seen + _read_pty(master, 2)
    return out.decode(), err.decode(errors="replace")


def test_ctrl_c_while_reading_says_how_far_it_got(tmp_path, backend):
    """The capture comes through a FIFO (a live tcpdump -w FIFO): the read waits for more
    after 1.5 batches of packets, and Ctrl-C stops it there. The first batch ends at the
    record of packet 16,384."""
    from mptcp_fast.analysis.analyzer import BATCH_PACKETS
    packet = tcp_packet(b"")
    write_pcap(tmp_path / "whole.pcap", [packet] * (BATCH_PACKETS * 3 // 2))
    os.mkfifo(tmp_path / "live.pcap")
    proc = subprocess.Popen(CLI + ["live.pcap"], cwd=tmp_path, env=_env(backend),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fifo = os.open(tmp_path / "live.pcap", os.O_WRONLY)
    try:
        data = memoryview((tmp_path / "whole.pcap").read_bytes())
        while data:
            data = data[os.write(fifo, data):]
        _wait_until_blocked_reading(proc, tmp_path / "live.pcap")
        out, err = _interrupted(proc)
    finally:
        proc.kill()
        os.close(fifo)
    batch_end = 24 + (BATCH_PACKETS - 1) * (16 + len(packet))
    assert proc.returncode == 130 and out == ""
    assert err == f"mptcp-fast analyze: interrupted while reading live.pcap after " \
                  f"{batch_end:,} bytes\n"


def _wait_until_blocked_reading(proc, path) -> None:
    """Until ``proc`` sleeps in a read of the file at ``path`` (a FIFO written no more): it
    has analysed every batch it could make of what came, and waits for more."""
    fds = os.listdir(f"/proc/{proc.pid}/fd")
    end = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < end
        fd = next((int(fd) for fd in fds if _link(proc.pid, fd) == str(path)), None)
        if fd is not None and _sleeps_in_a_call_on(proc.pid, fd):
            return
        fds = os.listdir(f"/proc/{proc.pid}/fd")
        time.sleep(0.05)


def _link(pid: int, fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _sleeps_in_a_call_on(pid: int, fd: int) -> bool:
    """The main thread of ``pid`` sleeps in a system call whose first argument is ``fd``
    (/proc's syscall: the call's number and arguments, or "running"), seen the same before
    and after its state."""
    def call():
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[:2]
    before = call()
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    return state == "S" and before == call() and before[1:] == [hex(fd)]


def test_ctrl_c_while_drawing_says_how_many_figures_are_written(tmp_path, backend):
    """The process drawing the figures is held (SIGSTOP: a slow drawing), the bar shows 0 of
    3; Ctrl-C (twice): one line after the report, exit status 130, the worker and its forks
    gone, no figure file left."""
    shutil.copy(SHIPPED_CAPTURE, tmp_path / "k.pcap")
    master, slave = _terminal()
    proc = subprocess.Popen(CLI + ["k.pcap", "--plot", "plots"], cwd=tmp_path,
                            env=_env(backend), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    helpers, seen = [], b""
    try:
        deadline = time.monotonic() + 120
        while not helpers:                       # the figure worker, forked before the read
            assert proc.poll() is None and time.monotonic() < deadline
            helpers = _descendants(proc.pid)
        os.kill(helpers[0], signal.SIGSTOP)
        while b"0/3" not in seen:
            assert proc.poll() is None and time.monotonic() < deadline, seen
            seen += _read_pty(master, 0.5)
        helpers = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        os.kill(helpers[0], signal.SIGCONT)
        out, err = _interrupted(proc, seen, master)    # Ctrl-C twice, as people press it
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 130
    assert out.endswith("  anomalies: none\n")           # the report came before
    assert err.splitlines()[-1].split("\r")[-1] == (
        "mptcp-fast analyze: interrupted after the report of k.pcap, while drawing figures: "
        "0 of 3 written to plots")
    assert "Traceback" not in err
    assert os.listdir(tmp_path / "plots") == []
    end = time.monotonic() + 10                  # reaped by their parents, which are gone
    while not _gone(helpers):
        assert time.monotonic() < end, helpers
        time.sleep(0.05)


def test_ctrl_c_while_writing_tables_says_how_many_are_written(tmp_path, backend):
    """The packet table's file is a FIFO nobody reads: writing it waits (a slow disk), after
    the report. Ctrl-C: one line, exit status 130, the FIFO left as it was."""
    pytest.importorskip("pyarrow")
    shutil.copy(SHIPPED_CAPTURE, tmp_path / "k.pcap")
    (tmp_path / "tables").mkdir()
    os.mkfifo(tmp_path / "tables" / "packets.parquet")
    proc = subprocess.Popen(CLI + ["k.pcap", "--parquet", "tables"], cwd=tmp_path,
                            env=_env(backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        report = b""
        while not report.endswith(b"  anomalies: none\n"):   # printed before the tables
            assert proc.poll() is None
            report += proc.stdout.readline()
        out, err = _interrupted(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130 and out == ""
    assert err == ("mptcp-fast analyze: interrupted after the report of k.pcap, while "
                   "writing tables: 0 of 3 written to tables\n")
    assert os.listdir(tmp_path / "tables") == ["packets.parquet"]


def test_ctrl_c_on_processes_ends_every_one(tmp_path, backend):
    """``--jobs 2`` over two live captures (FIFOs nobody writes to yet), with figures: a
    terminal's Ctrl-C (SIGINT to the whole foreground process group) ends the command with
    one line and exit status 130, and every process it started is gone with it."""
    for name in ("a.pcap", "b.pcap"):
        os.mkfifo(tmp_path / name)
    proc = subprocess.Popen(CLI + ["a.pcap", "b.pcap", "--jobs", "2", "--plot", "plots"],
                            cwd=tmp_path, env=_env(backend), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        helpers = []
        while len(helpers) < 4:            # two workers, each with its figure worker
            assert proc.poll() is None and time.monotonic() < deadline
            helpers = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, out) == (130, b"")
    assert err.decode() == "mptcp-fast analyze: interrupted with 0 of 2 files analysed\n"
    end = time.monotonic() + 10
    while not _gone(helpers):
        assert time.monotonic() < end, helpers
        time.sleep(0.05)


_DROPPED_INTERRUPT = """
import os, signal, time
from mptcp_fast.cli import analyze
analyze._pool_worker()
analyze._IN_JOB = True

class Dropping:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)    # the handler runs in here...
        sum(range(1000))                        # ...and Python drops what it raises

try:
    Dropping()
    time.sleep(30)                              # a read that waits for a writer
    print("slept on")
except KeyboardInterrupt:
    analyze._interrupt_taken()
    time.sleep(3 * analyze._AGAIN_EVERY)        # taken: no more of them
    print("ended")
"""


def test_a_pool_workers_interrupt_dropped_in_a_del_is_raised_again():
    """The cause of a hang once seen in CI: the parent's SIGTERM landed while a
    multiprocessing object's ``__del__`` ran, Python printed "Exception ignored" and dropped
    the interrupt, and the worker went on waiting on its FIFO. The interrupt is raised
    again until the job takes it, and not after."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _DROPPED_INTERRUPT], capture_output=True,
                          timeout=60, env=_env("python"))
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" in proc.stderr.decode()
    assert (proc.stdout, time.monotonic() - start < 20) == (b"ended\n", True)


def test_the_figure_worker_ends_with_the_command_even_killed(tmp_path):
    """SIGKILL leaves the command no word: the figure worker sees its pipe end and leaves
    (it holds no copy of the command's end of it)."""
    os.mkfifo(tmp_path / "live.pcap")
    proc = subprocess.Popen(CLI + ["live.pcap", "--plot", "plots"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        helpers = []
        while not helpers:                       # forked before the read, which waits
            assert proc.poll() is None and time.monotonic() < deadline
            helpers = _descendants(proc.pid)
        proc.kill()
        proc.wait()
        while not _gone(helpers):
            assert time.monotonic() < deadline, helpers
            time.sleep(0.05)
    finally:
        proc.kill()


def test_where_a_read_stood_in_a_file_of_known_size(tmp_path):
    """The words of the Ctrl-C line while a regular file is read (a FIFO has no size: the
    test above), the first and the second read (flows without handshakes placed)."""
    from mptcp_fast.cli.analyze import _Progress
    (tmp_path / "x.pcap").write_bytes(bytes(1000))
    progress = _Progress(2, shown=False)
    progress.start("x.pcap", str(tmp_path / "x.pcap"))
    progress.read_to(450)
    assert progress.where() == "while reading x.pcap at 45 %"
    progress.read_to(120)
    assert progress.where() == ("while reading a second time (to place flows without "
                                "handshakes) x.pcap at 12 %")
    progress.read_done()
    progress.file_done("x.pcap")
    progress.start("y.pcap", str(tmp_path / "x.pcap"))
    assert progress.where() == "while reading y.pcap at 0 % (done: x.pcap)"
