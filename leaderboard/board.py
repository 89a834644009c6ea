"""A leaderboard board: a folder (meant to be a git repo) of accepted datasets and submissions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.files import atomic_write_text, fsync_dir
from ackd_bench.leaderboard.submission import ID_PATTERN, LeaderboardError, read_bundle, validate
from ackd_bench.leaderboard.transaction import (
    IGNORED,
    LOCK_FILE,
    begin,
    board_lock,
    end,
    pause_point,
    recover,
    staged_path,
)

DATASETS_FILE = "datasets.json"
SUBMISSIONS_DIR = "submissions"
# Protocol fields that must agree between submissions on one dataset for their scores to compare.
BOARD_PROTOCOL_KEYS = ("profile", "epochs", "teacher_epochs", "batch_size", "lr", "student_px", "teacher_px",
                       "max_train_per_class")


def init(board: Path, datasets: list[Path]) -> Path:
    """Create a board accepting the given datasets: ``submissions/`` and ``datasets.json``.

    ``datasets.json`` is a list that keeps, per dataset, its name, version, fingerprint, classes and the true
    class of every RGB test sample (the students' test split), so submissions are checked
    against the truth without the dataset at hand.

    Raises:
        LeaderboardError: the board already exists, or no dataset was given.
    """
    from ackd_bench.benchmark.dataset import load_dataset

    board = Path(board)
    if not datasets:
        raise LeaderboardError("a board needs at least one dataset: --dataset DATASET_DIR")
    if (board / DATASETS_FILE).exists():
        raise LeaderboardError(f"{board} is already a board ({DATASETS_FILE} exists); leave it as it is")
    entries = []
    for path in datasets:
        ds = load_dataset(Path(path))
        _, labels, rows = ds.subset("rgb", "test")
        entries.append({"name": ds.manifest["name"], "version": ds.manifest["version"],
                        "fingerprint": ds.fingerprint, "recipe_fingerprint": ds.recipe_fingerprint,
                        "classes": list(ds.classes), "split": "test",
                        "modality": "rgb",
                        "test_labels": {str(s): int(c) for s, c in zip(rows["sample_id"], labels)}})
    fingerprints = [e["fingerprint"] for e in entries]
    if len(set(fingerprints)) != len(fingerprints):
        raise LeaderboardError("the same dataset (fingerprint) was given twice")
    (board / SUBMISSIONS_DIR).mkdir(parents=True, exist_ok=True)
    (board / LOCK_FILE).touch()
    if not (board / ".gitignore").exists():
        atomic_write_text(board / ".gitignore", "# ackd-bench board working files\n" + "\n".join(IGNORED) + "\n")
    text = json.dumps(entries, indent=1, sort_keys=True)
    atomic_write_text(board / DATASETS_FILE, text + "\n")  # last: a board is a folder with datasets.json
    return board


def require_board(board: Path) -> Path:
    """``board`` as a Path, when it is a board (has ``datasets.json``).

    Raises:
        LeaderboardError: it is not (the message says how to make one).
    """
    board = Path(board)
    if not (board / DATASETS_FILE).is_file():
        raise LeaderboardError(f"{board} is not a leaderboard board (no {DATASETS_FILE}); create one with "
                               f"`ackd-bench leaderboard init --board {board} --dataset DATASET_DIR`")
    if (board / SUBMISSIONS_DIR).exists() and not (board / SUBMISSIONS_DIR).is_dir():
        raise LeaderboardError(f"{board / SUBMISSIONS_DIR} is not a folder; move it out of the board")
    return board


def read_datasets(board: Path) -> list[dict[str, Any]]:
    """The entries of the board's ``datasets.json``, each with a string name, version and fingerprint.

    Args:
        board: The board folder.

    Returns:
        The entries in file order.

    Raises:
        LeaderboardError: ``board`` is not a board, or its datasets file is unreadable (the file is named).
    """
    path = require_board(board) / DATASETS_FILE
    restore = "restore it from the board's git history or recreate the board with `ackd-bench leaderboard init`"
    from ackd_bench.benchmark.boundary import InputError, load_file

    try:
        data = load_file(path, what="board")
    except InputError as err:
        raise LeaderboardError(f"{err}; {restore}") from err
    if not isinstance(data, list) or not all(
            isinstance(d, dict) and all(isinstance(d.get(k), str) for k in ("name", "version", "fingerprint"))
            for d in data):
        raise LeaderboardError(f"{path} is not an ackd-bench board datasets file (a list of datasets with name, "
                               f"version and fingerprint); {restore}")
    return data


def board_datasets(board: Path) -> dict[str, dict[str, Any]]:
    """The board's accepted datasets by fingerprint.

    Raises:
        LeaderboardError: ``board`` is not a board (says how to make one), or its datasets file is
            unreadable or lacks the true labels and classes (names the file).
    """
    data = read_datasets(board)
    if not all(isinstance(d.get("test_labels"), dict) and isinstance(d.get("classes"), list) for d in data):
        raise LeaderboardError(f"{Path(board) / DATASETS_FILE} lacks the datasets' classes or true test labels; "
                               "recreate the board with `ackd-bench leaderboard init`")
    return {d["fingerprint"]: d for d in data}


def board_entry(datasets: dict[str, dict[str, Any]], dataset: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The board dataset a submission's ``dataset`` block belongs to, and whether its content drifted.

    A dataset is the board's by its content fingerprint, or else by its recipe fingerprint (the same
    chips, splits and labels, read by another machine whose GDAL or libraries changed some bytes):
    then ``drift`` is True, the submission is accepted and the board marks it.
    """
    entry = datasets.get(dataset.get("fingerprint"))
    if entry is not None:
        return entry, False
    recipe = dataset.get("recipe_fingerprint")
    for candidate in datasets.values():
        if recipe is not None and candidate.get("recipe_fingerprint") == recipe:
            return candidate, True
    return None, False


def true_labels(board: Path, dataset: dict[str, Any]) -> dict[str, int] | None:
    """``{sample_id: class}`` of the test split of the board dataset ``dataset`` (a submission's
    block) belongs to (`board_entry`), or None when the board does not know it."""
    entry, _ = board_entry(board_datasets(board), dataset)
    return None if entry is None else entry["test_labels"]


def board_submission_files(board: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every accepted submission of the board with its file, sorted by file name.

    Hidden files (staged submissions, temporary files, ``.gitkeep``) are not submissions.

    Raises:
        LeaderboardError: a file in ``submissions/`` is not ``<id>.json`` holding a JSON object with that
            id (the file is named).
    """
    folder = require_board(board) / SUBMISSIONS_DIR
    out = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        fix = "restore it from the board's git history or move it out of the board"
        if path.suffix != ".json" or not path.is_file():
            raise LeaderboardError(f"{path} is not a submission (submissions/ holds only <id>.json files); {fix}")
        try:
            bundle = read_bundle(path)
        except LeaderboardError as err:
            raise LeaderboardError(f"{err}; {fix}") from err
        if bundle.get("id") != path.stem:
            raise LeaderboardError(f"{path} holds id {bundle.get('id')!r}, not {path.stem!r} as its name says; {fix}")
        out.append((path, bundle))
    return out


def board_submissions(board: Path) -> list[dict[str, Any]]:
    """Every accepted submission of the board, sorted by id (see :func:`board_submission_files`)."""
    return [bundle for _, bundle in board_submission_files(board)]


def board_problems(bundle: dict[str, Any], board: Path) -> list[str]:
    """The board's own rules: a known dataset, one protocol per dataset, no repeated id or content."""
    datasets = board_datasets(board)
    d = bundle["dataset"]
    entry, _ = board_entry(datasets, d)
    if entry is None:
        known = ", ".join(f"{e['name']} {fp[:12]}" for fp, e in datasets.items())
        return [(f"dataset fingerprint {d['fingerprint'][:12]}… is not one of this board's datasets ({known}); "
                 "run on an accepted dataset build")]
    problems = []
    if (d["name"], d["version"]) != (entry["name"], entry["version"]):
        problems.append(f"dataset {d['name']} {d['version']} is registered as {entry['name']} {entry['version']}")
    if bundle["runs"][0]["dataset"]["classes"] != entry["classes"]:
        problems.append("the runs' classes are not the board dataset's classes")
    shas = sorted(r["predictions"]["sha256"] for r in bundle["runs"])
    for path, other in board_submission_files(board):
        try:
            other_shas = sorted(r["predictions"]["sha256"] for r in other["runs"])
            other_entry, _ = board_entry(datasets, other["dataset"])
            other_protocol = dict(other["protocol"])
        except (KeyError, TypeError, ValueError) as err:
            raise LeaderboardError(f"{path} is not a complete submission (missing or mistyped field: {err}); "
                                   "restore it from the board's git history or move it out of the board") from err
        if other["id"] == bundle["id"]:
            problems.append(f"id {bundle['id']!r} is already on the board; choose another id")
        elif other_shas == shas:
            problems.append(f"the same runs (predictions) are already on the board as {other['id']!r}")
        if other_entry is not None and other_entry["fingerprint"] == entry["fingerprint"]:
            theirs = {k: other_protocol.get(k) for k in BOARD_PROTOCOL_KEYS}
            ours = {k: bundle["protocol"].get(k) for k in BOARD_PROTOCOL_KEYS}
            if theirs != ours and not any("protocol" in p for p in problems):
                diff = ", ".join(f"{k} {ours[k]!r} vs {theirs[k]!r}"
                                 for k in BOARD_PROTOCOL_KEYS if ours[k] != theirs[k])
                problems.append(f"protocol differs from the board's other submissions on {d['name']} ({diff}); "
                                "rerun with the board's profile")
    return problems


def submission_path(board: Path, submission_id: str) -> Path:
    """Where a submission lives on the board; ids that could leave ``submissions/`` are refused."""
    if not ID_PATTERN.match(submission_id):
        raise LeaderboardError(f"submission id {submission_id!r} must match {ID_PATTERN.pattern}")
    folder = (Path(board) / SUBMISSIONS_DIR).resolve()
    path = (folder / f"{submission_id}.json").resolve()
    if path.parent != folder:
        raise LeaderboardError(f"submission id {submission_id!r} leaves the submissions folder")
    return path


def add_submission(source: Path | str | bytes, board: Path) -> tuple[Path, bool]:
    """Validate a bundle against the board and add it as ``submissions/<id>.json``, rendered on the page.

    One transaction under the board's lock (see :mod:`ackd_bench.leaderboard.transaction`): the bundle
    is staged, the page rendered with it, and only then is it renamed into ``submissions/``. Killed at
    any point, the board keeps the submission rendered or has neither; the next command completes it.
    A bundle whose identical copy is already on the board (a retry after a kill that came after the
    commit) is recognised as done.

    Args:
        source: The bundle: a file path or its bytes.
        board: The board folder.

    Returns:
        The submission's path on the board, and whether this call added it (False: it was there).

    Raises:
        LeaderboardError: the bundle is refused (every problem listed), the board is missing or holds
            an unreadable file, or rendering failed (the board is left without the submission).
    """
    from ackd_bench.leaderboard.render import page_files, write_page_files

    board = require_board(board)
    with board_lock(board):
        pause_point("locked")
        recover(board)
        done = _identical_on_board(source, board)
        if done is not None:
            return done, False
        bundle = validate(source, board)
        path = submission_path(board, bundle["id"])
        if path.exists():
            raise LeaderboardError(f"id {bundle['id']!r} is already on the board; choose another id")
        path.parent.mkdir(exist_ok=True)  # git keeps no empty folders: a fresh clone may lack it
        staged = staged_path(path)
        begin(board, {"op": "submit", "id": bundle["id"]})
        pause_point("journal")
        atomic_write_text(staged, json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        pause_point("staged")
        try:
            files = page_files(board, staged=[staged])
        except Exception as err:  # nothing of the page was written yet: take the submission back
            staged.unlink(missing_ok=True)
            end(board)
            raise LeaderboardError(f"{bundle['id']!r} was not added: rendering the board failed ({err})") from err
        try:
            write_page_files(files)
        except Exception as err:  # the page may be half new: the next command renders it again
            raise LeaderboardError(f"{bundle['id']!r} was not added: writing the board's page failed ({err}); "
                                   f"fix that, then `ackd-bench leaderboard render {board}` restores the page") from err
        pause_point("rendered")
        os.replace(staged, path)  # the commit
        fsync_dir(path.parent)
        pause_point("committed")
        end(board)
        pause_point("done")
    return path, True


def submit(source: Path | str | bytes, board: Path) -> Path:
    """Add a bundle to the board and re-render it (see :func:`add_submission`).

    Returns:
        The submission's path on the board.

    Raises:
        LeaderboardError: the bundle is refused (every problem listed) or the board is missing.
    """
    return add_submission(source, board)[0]


def _identical_on_board(source: Path | str | bytes, board: Path) -> Path | None:
    """The board's file of this very bundle (same id, same content), or None."""
    try:
        bundle = read_bundle(source)
    except LeaderboardError:
        return None  # validation reports it
    sid = bundle.get("id")
    if not isinstance(sid, str) or not ID_PATTERN.match(sid):
        return None
    path = submission_path(board, sid)
    return path if path.is_file() and read_bundle(path) == bundle else None
