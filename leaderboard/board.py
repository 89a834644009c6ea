"""A leaderboard board: a folder (meant to be a git repo) of accepted datasets and submissions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset_files import atomic_write_text
from ackd_bench.leaderboard.submission import ID_PATTERN, LeaderboardError, read_bundle, validate

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
                        "fingerprint": ds.fingerprint, "classes": list(ds.classes), "split": "test",
                        "modality": "rgb",
                        "test_labels": {str(s): int(c) for s, c in zip(rows["sample_id"], labels)}})
    fingerprints = [e["fingerprint"] for e in entries]
    if len(set(fingerprints)) != len(fingerprints):
        raise LeaderboardError("the same dataset (fingerprint) was given twice")
    (board / SUBMISSIONS_DIR).mkdir(parents=True, exist_ok=True)
    text = json.dumps(entries, indent=1, sort_keys=True)
    atomic_write_text(board / DATASETS_FILE, text + "\n")
    return board


def board_datasets(board: Path) -> dict[str, dict[str, Any]]:
    """The board's accepted datasets by fingerprint.

    Raises:
        LeaderboardError: ``board`` is not a board (says how to make one).
    """
    path = Path(board) / DATASETS_FILE
    if not path.is_file():
        raise LeaderboardError(f"{board} is not a leaderboard board (no {DATASETS_FILE}); create one with "
                               f"`ackd-bench leaderboard init --board {board} --dataset DATASET_DIR`")
    data = json.loads(path.read_text("utf-8"))
    if not isinstance(data, list) or not all(isinstance(d, dict) and "test_labels" in d for d in data):
        raise LeaderboardError(f"{path} is not an ackd-bench board datasets file (a list of datasets)")
    return {d["fingerprint"]: d for d in data}


def true_labels(board: Path, fingerprint: str) -> dict[str, int] | None:
    """``{sample_id: class}`` of the dataset's test split, or None when the board does not know it."""
    entry = board_datasets(board).get(fingerprint)
    return None if entry is None else entry["test_labels"]


def board_submissions(board: Path) -> list[dict[str, Any]]:
    """Every accepted submission of the board, sorted by id."""
    folder = Path(board) / SUBMISSIONS_DIR
    return [read_bundle(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def board_problems(bundle: dict[str, Any], board: Path) -> list[str]:
    """The board's own rules: a known dataset, one protocol per dataset, no repeated id or content."""
    datasets = board_datasets(board)
    d = bundle["dataset"]
    entry = datasets.get(d["fingerprint"])
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
    for other in board_submissions(board):
        if other["id"] == bundle["id"]:
            problems.append(f"id {bundle['id']!r} is already on the board; choose another id")
        elif sorted(r["predictions"]["sha256"] for r in other["runs"]) == shas:
            problems.append(f"the same runs (predictions) are already on the board as {other['id']!r}")
        if other["dataset"]["fingerprint"] == d["fingerprint"]:
            theirs = {k: other["protocol"].get(k) for k in BOARD_PROTOCOL_KEYS}
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


def submit(source: Path | str | bytes, board: Path) -> Path:
    """Validate a bundle against the board and add it as ``submissions/<id>.json``, then re-render.

    The board changes atomically or not at all: the file is written to a temporary name and
    renamed into place; if re-rendering fails, the submission is taken out again.

    Raises:
        LeaderboardError: the bundle is refused (every problem listed) or the board is missing.
    """
    board = Path(board)
    board_datasets(board)  # a clear error when the board does not exist
    bundle = validate(source, board)
    path = submission_path(board, bundle["id"])
    if path.exists():
        raise LeaderboardError(f"id {bundle['id']!r} is already on the board; choose another id")
    atomic_write_text(path, json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    render = _renderer()
    if render is not None:
        try:
            render(board)
        except Exception as err:
            path.unlink(missing_ok=True)
            raise LeaderboardError(f"{bundle['id']!r} was not added: rendering the board failed ({err})") from err
        except BaseException:  # interrupted: leave the board as it was
            path.unlink(missing_ok=True)
            raise
    return path


def _renderer():
    """Part B's ``render_board``, when that module is installed."""
    try:
        from ackd_bench.leaderboard.render import render_board
    except ImportError:
        return None
    return render_board
