"""Keep a board's submissions and its rendered page in step: an OS lock, a journal and staged submissions.

Every command that changes a board (``submit``, ``render``) holds the board's lock, an ``flock`` on
``BOARD/.leaderboard.lock`` that the OS releases when the process dies, and first completes what an
interrupted command left behind. A submit writes a journal (``BOARD/.leaderboard-journal.json``),
stages the bundle as ``submissions/.<id>.staged``, renders the page with it, and only then renames it
to ``submissions/<id>.json`` (the commit) and removes the journal. A journal found by the next
command means the page may not match ``submissions/``: staged files are removed (an uncommitted
submit is rolled back) and the page is rendered again. So after a kill at any point, and at the
latest after the next command, every submission is on the page and the page shows nothing else.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.files import atomic_write_text, fsync_dir

LOCK_FILE = ".leaderboard.lock"
JOURNAL_FILE = ".leaderboard-journal.json"
STAGED_SUFFIX = ".staged"
TEMP_GLOB = ".*.tmp-*"  # atomic_write_bytes' temporary names, left behind by a killed writer
# The board's working files, kept out of its git history (written by `init` as .gitignore).
IGNORED = (f"/{LOCK_FILE}", f"/{JOURNAL_FILE}", f".*{STAGED_SUFFIX}", TEMP_GLOB)
# Test-only: a stage name here makes a board command stop at that stage (it says so on stderr and
# sleeps PAUSE_S), so that a test can SIGKILL it exactly between two steps of a transaction.
PAUSE_ENV = "ACKD_BENCH_LEADERBOARD_TEST_PAUSE"
PAUSE_S = 300


@contextmanager
def board_lock(board: Path) -> Iterator[None]:
    """Hold the board's exclusive lock for the ``with`` block; blocks while another process holds it.

    Args:
        board: An existing board folder.
    """
    fd = os.open(Path(board) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock; so does the process dying


def begin(board: Path, what: dict[str, Any]) -> None:
    """Write the journal: from now until :func:`end`, the page may not match ``submissions/``."""
    atomic_write_text(Path(board) / JOURNAL_FILE, json.dumps(what, sort_keys=True) + "\n")


def end(board: Path) -> None:
    """Remove the journal: the page matches ``submissions/`` again."""
    (Path(board) / JOURNAL_FILE).unlink(missing_ok=True)
    fsync_dir(Path(board))


def staged_path(submission: Path) -> Path:
    """The hidden name a submission waits under until it is committed (not ``*.json``: not yet on the board)."""
    return submission.with_name(f".{submission.stem}{STAGED_SUFFIX}")


def recover(board: Path) -> bool:
    """Complete what an interrupted command left on ``board``; call it holding :func:`board_lock`.

    Removes temporary files of killed writers and, when a journal or a staged submission is
    there, removes the staged submissions (never committed) and renders the page again.

    Args:
        board: The board folder.

    Returns:
        Whether the page was rendered.

    Raises:
        LeaderboardError: rendering failed (the journal stays, so the next command tries again).
    """
    from ackd_bench.leaderboard.render import SITE_DIR, page_files, write_page_files
    from ackd_bench.leaderboard.board import SUBMISSIONS_DIR

    board = Path(board)
    submissions = board / SUBMISSIONS_DIR
    for folder in (board, submissions, board / SITE_DIR):
        if folder.is_dir():
            for temp in folder.glob(TEMP_GLOB):
                temp.unlink(missing_ok=True)
    staged = sorted(submissions.glob(f".*{STAGED_SUFFIX}")) if submissions.is_dir() else []
    if not staged and not (board / JOURNAL_FILE).exists():
        return False
    begin(board, {"op": "recover"})  # a staged file without a journal still needs the page rendered
    for path in staged:
        path.unlink()
    write_page_files(page_files(board))
    end(board)
    return True


def pause_point(stage: str) -> None:
    """Test-only: stop at ``stage`` when ``ACKD_BENCH_LEADERBOARD_TEST_PAUSE`` names it (see PAUSE_ENV)."""
    if os.environ.get(PAUSE_ENV) == stage:
        sys.stderr.write(f"ackd-bench: paused at {stage} ({PAUSE_ENV})\n")
        sys.stderr.flush()
        time.sleep(PAUSE_S)
