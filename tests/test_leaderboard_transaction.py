"""A board as a transaction: real concurrent processes, SIGKILL between every two steps of a submit and at random.

The invariant: once the next board command has run (at the latest), every file in ``submissions/`` is
on the rendered page (LEADERBOARD.md and site/index.html) and the page shows nothing else; a retry of a
killed submit is accepted. Most processes are forked by one driver (``python -c DRIVER``) that imports
the leaderboard once, so that many submits can run and be killed cheaply; two tests run `ackd-bench`.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ackd_bench.benchmark.dataset import write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.leaderboard.board import add_submission, init, submit
from ackd_bench.leaderboard.render import render_board
from ackd_bench.leaderboard.transaction import JOURNAL_FILE, PAUSE_ENV
from leaderboard_board import fake_bundles

WAIT_S = 120  # generous: only a hung process waits this long
ACKD_BENCH = str(Path(sys.executable).with_name("ackd-bench"))

# Forks one real process per job of a batch (a JSON line on stdin) and reports on stdout, one JSON
# line per event: started (pid), paused (the test-only pause hook's line on the job's stderr), exit
# (exit code, negative for a signal; stderr), then done. A job may name a stage to pause at, start
# only once another job paused ("after"), and be SIGKILLed by the driver, its parent, when it pauses
# or after a delay: the driver has not reaped it then, so its pid cannot be another process's.
DRIVER = r"""
import json, os, select, signal, sys, time
from ackd_bench.leaderboard.board import submit
from ackd_bench.leaderboard.render import render_board, render_plot
render_plot([])  # import what submit and render need (matplotlib, scipy) before forking
import ackd_bench.benchmark.table

def fork(board, job, go):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        if go is not None:
            os.read(go, 1)
        if job.get("pause"):
            os.environ["PAUSE_ENV"] = job["pause"]
        code = 0
        try:
            submit(job["file"], board) if job["op"] == "submit" else render_board(board)
        except Exception as err:
            sys.stderr.write(f"{type(err).__name__}: {err}\n")
            code = 1
        sys.stderr.flush()
        os._exit(code)
    os.close(w)
    return pid, r

for line in sys.stdin:
    batch = json.loads(line)
    board, jobs = batch["board"], batch["jobs"]
    def say(**event):
        print(json.dumps({"batch": batch["batch"], **event}), flush=True)
    go_r, go_w = os.pipe()
    state = {}
    def start(i, go):
        pid, r = fork(board, jobs[i], go)
        state[i] = {"pid": pid, "fd": r, "out": b"", "paused": False, "t0": time.monotonic(), "killed": False}
        say(event="started", job=i, pid=pid)
    for i, job in enumerate(jobs):
        if job.get("after") is None:
            start(i, go_r)
    os.write(go_w, b"x" * len(state))
    os.close(go_w)
    os.close(go_r)
    running = set(state)
    while running:
        later = []
        deadlines = [state[i]["t0"] + jobs[i]["kill_after"] for i in running
                     if jobs[i].get("kill_after") is not None and not state[i]["killed"]]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 5.0
        ready, _, _ = select.select([state[i]["fd"] for i in running], [], [], timeout)
        now = time.monotonic()
        for i in list(running):
            s, job = state[i], jobs[i]
            if job.get("kill_after") is not None and not s["killed"] and now >= s["t0"] + job["kill_after"]:
                os.kill(s["pid"], signal.SIGKILL)
                s["killed"] = True
            if s["fd"] not in ready:
                continue
            chunk = os.read(s["fd"], 65536)
            s["out"] += chunk
            if not s["paused"] and b"paused at" in s["out"]:
                s["paused"] = True
                say(event="paused", job=i)
                if job.get("kill_at_pause"):
                    os.kill(s["pid"], signal.SIGKILL)
                    s["killed"] = True
                later += [k for k, other in enumerate(jobs) if other.get("after") == i]
            if not chunk:
                _, status = os.waitpid(s["pid"], 0)
                os.close(s["fd"])
                running.discard(i)
                say(event="exit", job=i, code=os.waitstatus_to_exitcode(status), killed=s["killed"],
                    output=s["out"].decode("utf-8", "replace"))
        for k in later:  # after the loop over this select's fds: a new pipe may reuse a closed fd's number
            start(k, None)
            running.add(k)
    for k in sorted(set(range(len(jobs))) - set(state)):
        say(event="exit", job=k, code=None, killed=False, output="never started: its job did not pause")
    say(event="done")
""".replace("PAUSE_ENV", PAUSE_ENV)


class Driver:
    """The driver process, and its events as a queue (read by a thread: no blocking reads in the test)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.events: queue.Queue = queue.Queue()
        self.batch = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, board: Path, jobs: list[dict]) -> None:
        self.batch += 1
        self.proc.stdin.write(json.dumps({"batch": self.batch, "board": str(board), "jobs": jobs}) + "\n")
        self.proc.stdin.flush()

    def next_event(self, timeout: float = WAIT_S) -> dict:
        """The next event of the latest batch (a failed test may have left some of an earlier one)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            assert event is not None, f"the driver died (exit {self.proc.wait()})"
            if event["batch"] == self.batch:
                return event

    def run(self, board: Path, jobs: list[dict]) -> dict[int, dict]:
        """Run one batch to its end; the exit event of every job, by job index."""
        self.send(board, jobs)
        exits = {}
        while (event := self.next_event())["event"] != "done":
            if event["event"] == "exit":
                exits[event["job"]] = event
        return exits

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=WAIT_S)
        self.reader.join(timeout=WAIT_S)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def driver():
    d = Driver()
    yield d
    d.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=4, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


@pytest.fixture(scope="module")
def bundles(dataset, tmp_path_factory) -> list[Path]:
    """Six valid, distinct submissions (fake-0 … fake-5) for a board on ``dataset``."""
    root = tmp_path_factory.mktemp("bundles")
    return fake_bundles(init(root / "board", [dataset]), root, 6)


@pytest.fixture
def new_board(dataset, tmp_path):
    """A factory of fresh, empty boards on ``dataset``."""
    count = iter(range(1000))
    return lambda: init(tmp_path / f"board{next(count)}", [dataset])


def ids_on_disk(board: Path) -> set[str]:
    return {p.stem for p in (board / "submissions").glob("*.json")}


def ids_on_page(board: Path) -> set[str]:
    """The submission ids the HTML page shows; the Markdown page must show the same rows."""
    html = set(re.findall(r'data-id="([^"]+)"', (board / "site" / "index.html").read_text("utf-8")))
    md = (board / "LEADERBOARD.md").read_text("utf-8")
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    names = re.findall(r"\| Tester (\d+) ", md)
    assert len(rows) == len(html) and {f"fake-{n}" for n in names} == html, (html, rows)
    return html


def assert_whole(board: Path) -> set[str]:
    """The invariant: the page shows exactly the submissions, nothing is staged, no journal is left."""
    on_disk = ids_on_disk(board)
    assert ids_on_page(board) == on_disk
    assert not list((board / "submissions").glob(".*")), "staged or temporary files left"
    assert not (board / JOURNAL_FILE).exists()
    return on_disk


def test_concurrent_submits_all_reach_the_page(driver, bundles, new_board):
    for _trial in range(4):
        board = new_board()
        exits = driver.run(board, [{"op": "submit", "file": str(b)} for b in bundles[:6]])
        assert {i: e["code"] for i, e in exits.items()} == {i: 0 for i in range(6)}, exits
        assert assert_whole(board) == {f"fake-{k}" for k in range(6)}


def test_concurrent_cli_submits_and_render_all_reach_the_page(bundles, new_board):
    board = new_board()
    commands = [[ACKD_BENCH, "leaderboard", "submit", str(b), "--board", str(board)] for b in bundles[:6]]
    commands.append([ACKD_BENCH, "leaderboard", "render", str(board)])
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    outputs = [p.communicate(timeout=WAIT_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), outputs
    assert assert_whole(board) == {f"fake-{k}" for k in range(6)}


# Every stage a submit passes, in order (leaderboard/board.py and render.py's pause points).
STAGES = ("locked", "journal", "staged", "rendering", "rendered", "committed", "done")


@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_each_stage_then_render_then_retry(stage, driver, bundles, new_board):
    board = new_board()
    submit(bundles[0], board)
    exits = driver.run(board, [{"op": "submit", "file": str(bundles[1]), "pause": stage, "kill_at_pause": True}])
    assert exits[0]["code"] == -signal.SIGKILL and f"paused at {stage}" in exits[0]["output"]
    committed = STAGES.index(stage) >= STAGES.index("committed")
    assert ids_on_disk(board) == ({"fake-0", "fake-1"} if committed else {"fake-0"})
    render_board(board)  # the next command completes or rolls back what the kill left
    assert assert_whole(board) == ids_on_disk(board)
    path, added = add_submission(bundles[1], board)  # the submitter's retry
    assert path.name == "fake-1.json" and added is not committed
    assert assert_whole(board) == {"fake-0", "fake-1"}


@pytest.mark.parametrize("stage", ["staged", "rendering", "committed"])
def test_kill_then_retry_is_the_next_command(stage, driver, bundles, new_board):
    board = new_board()
    submit(bundles[0], board)
    exits = driver.run(board, [{"op": "submit", "file": str(bundles[1]), "pause": stage, "kill_at_pause": True}])
    assert exits[0]["code"] == -signal.SIGKILL
    if stage != "committed":
        assert (board / JOURNAL_FILE).exists()  # the next command knows the page may be stale
    submit(bundles[1], board)
    assert assert_whole(board) == {"fake-0", "fake-1"}


def test_killed_render_is_completed_by_the_next_command(driver, bundles, new_board):
    board = new_board()
    submit(bundles[0], board)
    (board / "submissions" / "fake-1.json").write_bytes(bundles[1].read_bytes())  # e.g. arrived by `git pull`
    exits = driver.run(board, [{"op": "render", "pause": "rendering", "kill_at_pause": True}])
    assert exits[0]["code"] == -signal.SIGKILL and (board / JOURNAL_FILE).exists()
    assert "fake-1" not in ids_on_page(board)  # the plot is new, the pages are not yet
    submit(bundles[2], board)  # any next command renders the page whole again
    assert assert_whole(board) == {"fake-0", "fake-1", "fake-2"}


def test_random_kills_never_leave_half_a_submission(driver, bundles, new_board):
    rng = random.Random(14)
    # How long one submit alone and three together take here and now (unkilled; the first of each
    # warms up), so that the random kills land inside them whatever the machine's load.
    took = {}
    for n in (1, 3, 1, 3):
        board, start = new_board(), time.monotonic()
        exits = driver.run(board, [{"op": "submit", "file": str(b)} for b in bundles[:n]])
        assert [exits[i]["code"] for i in range(n)] == [0] * n, exits
        took[n] = time.monotonic() - start
    for trial in range(8):
        n = (1, 3)[trial % 2]  # a submit killed alone (only the next command can clean up) or among others
        board, victim = new_board(), rng.randrange(n)
        jobs = [{"op": "submit", "file": str(b)} for b in bundles[:n]]
        jobs[victim]["kill_after"] = rng.uniform(0.0, took[n])
        exits = driver.run(board, jobs)
        assert all(exits[i]["code"] == 0 for i in range(n) if i != victim), exits
        if exits[victim]["code"] == 0:
            assert ids_on_disk(board) == {f"fake-{i}" for i in range(n)}  # the kill came too late
        render_board(board)  # the next command
        assert assert_whole(board) >= {f"fake-{i}" for i in range(n) if i != victim}
        submit(bundles[victim], board)  # the retry: accepted, or recognised as already there
        assert assert_whole(board) == {f"fake-{i}" for i in range(n)}


def test_the_lock_serialises_and_dies_with_its_holder(driver, bundles, new_board):
    board = new_board()
    driver.send(board, [{"op": "submit", "file": str(bundles[0]), "pause": "staged"},
                        {"op": "submit", "file": str(bundles[1]), "after": 0}])
    pids, exits = {}, {}
    try:
        while 1 not in pids:  # the second starts once the first paused, holding the lock
            event = driver.next_event()
            if event["event"] == "started":
                pids[event["job"]] = event["pid"]
        # The second submit waits for the lock: it cannot finish while the first holds it.
        deadline = time.monotonic() + 2.0
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = driver.next_event(timeout=left)
            except queue.Empty:
                break
            assert event["event"] != "exit", f"a submit finished while another held the lock: {event}"
    finally:
        os.kill(pids[0], signal.SIGKILL)  # paused, not reaped by the driver: still that process
    while (event := driver.next_event())["event"] != "done":
        if event["event"] == "exit":
            exits[event["job"]] = event["code"]
    assert exits == {0: -signal.SIGKILL, 1: 0}
    assert assert_whole(board) == {"fake-1"}


def test_cli_submit_killed_before_its_commit_is_retried(bundles, new_board):
    board = new_board()
    command = [ACKD_BENCH, "leaderboard", "submit", str(bundles[0]), "--board", str(board)]
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env={**os.environ, PAUSE_ENV: "rendered"}) as proc:
        try:
            line = proc.stderr.readline()  # the pause hook's line: the page shows fake-0, submissions/ not yet
            assert "paused at rendered" in line, line
            assert ids_on_page(board) == {"fake-0"} and ids_on_disk(board) == set()
        finally:
            proc.kill()  # SIGKILL
    assert add_submission(bundles[0], board)[1]  # the retry rolls the killed submit back, then adds it
    assert assert_whole(board) == {"fake-0"}
