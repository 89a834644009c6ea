"""Leaderboard submissions: pack real `run` output, validate, init a board, submit; bad inputs leave it untouched."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.dataset import write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.protocol import classification_metrics, get_profile
from ackd_bench.benchmark.runner import run_experiment
from ackd_bench.benchmark.runner import test_predictions as hash_predictions
from ackd_bench.leaderboard.board import init, submission_path, submit
from ackd_bench.leaderboard.submission import (
    MAX_BYTES,
    LeaderboardError,
    find_problems,
    pack,
    submission_schema,
    summarise,
    validate,
)

SUBMITTER = {"name": "A. Author", "affiliation": "Test Lab", "code_url": "https://example.org/code",
             "paper_url": "", "licence": "CC-BY-4.0"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=4, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def _three_seeds(dataset: Path, method: str, tmp_path_factory) -> Path:
    """Three seeds of a real (1-epoch, 16 px) `ackd-bench run` of ``method`` on ``dataset``; their folder."""
    out = tmp_path_factory.mktemp("results")
    profile = get_profile("smoke", epochs=1, student_px=16, teacher_px=16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACKD_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        run_experiment(dataset, method=method, arch="resnet18", teacher_arch=None, seeds=[0, 1, 2], profile=profile,
                       device="cpu", out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def runs_dir(tiny, tmp_path_factory) -> Path:
    return _three_seeds(tiny, "kd", tmp_path_factory)


@pytest.fixture(scope="module")
def bundle_file(runs_dir, tmp_path_factory) -> Path:
    return pack(runs_dir, out=tmp_path_factory.mktemp("sub") / "kd.json", **SUBMITTER)


@pytest.fixture(scope="module")
def board(tiny, bundle_file, tmp_path_factory) -> Path:
    """A board on the tiny dataset holding the packed submission."""
    path = init(tmp_path_factory.mktemp("boards") / "board", [tiny])
    submit(bundle_file, path)
    return path


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        digest.update(str(p.relative_to(root)).encode() + b"\0")
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def test_round_trip_pack_validate_init_submit(tiny, bundle_file, tmp_path):
    bundle = json.loads(bundle_file.read_text())
    assert bundle["format"] == "ackd-bench-submission" and bundle["format_version"] == 1
    assert bundle["summary"]["seeds"] == [0, 1, 2] and len(bundle["runs"]) == 3
    assert bundle["id"].startswith("kd-resnet18-resnet18-")
    assert 0 <= bundle["summary"]["oa_ci_low"] <= bundle["summary"]["oa_mean"] <= bundle["summary"]["oa_ci_high"] <= 1
    assert find_problems(bundle_file) == []
    Draft202012Validator.check_schema(submission_schema())
    assert validate(bundle_file)["id"] == bundle["id"]
    board = init(tmp_path / "board", [tiny])
    labels = json.loads((board / "datasets.json").read_text())[0]["test_labels"]
    assert sorted(labels) == sorted(bundle["runs"][0]["predictions"]["sample_ids"])
    assert validate(bundle_file, board)["id"] == bundle["id"]
    path = submit(bundle_file, board)
    assert path == board / "submissions" / f"{bundle['id']}.json"
    assert json.loads(path.read_text()) == bundle
    assert not [p for p in (board / "submissions").iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(LeaderboardError, match="already a board"):
        init(board, [tiny])


def test_cli_pack_init_validate_submit(runs_dir, tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "sub.json"
    res = runner.invoke(main, ["leaderboard", "pack", str(runs_dir), "--out", str(out), "--name", "A. Author",
                               "--affiliation", "Lab", "--code-url", "https://example.org/c", "--licence", "MIT",
                               "--id", "kd-cli"])
    assert res.exit_code == 0, res.output
    board = tmp_path / "board"
    for args in (["init", "--board", str(board), "--dataset", str(tiny)], ["validate", str(out)],
                 ["validate", str(out), "--board", str(board)], ["submit", str(out), "--board", str(board)]):
        res = runner.invoke(main, ["leaderboard", *args])
        assert res.exit_code == 0, res.output
    assert (board / "submissions" / "kd-cli.json").is_file()
    before = _tree_hash(board)
    # The same file again (a retry after a kill, say) is recognised as done; other content under the id is not.
    res = runner.invoke(main, ["leaderboard", "submit", str(out), "--board", str(board)])
    assert res.exit_code == 0 and "already on the board with this content" in res.output, res.output
    assert _tree_hash(board) == before
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(out.read_text()), "created": "2020-01-01T00:00:00Z"}))
    res = runner.invoke(main, ["leaderboard", "submit", str(other), "--board", str(board)])
    assert res.exit_code == 1 and "already on the board; choose another id" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(main, ["leaderboard", "render", "--board", str(board)])
    assert res.exit_code == 0, res.output
    assert (board / "LEADERBOARD.md").is_file()
    assert runner.invoke(main, ["leaderboard", "render"]).exit_code == 2
    for sub in ("pack", "init", "validate", "submit", "render"):
        res = runner.invoke(main, ["leaderboard", sub, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output


def test_pack_refuses_mixed_folders_and_too_few_seeds(runs_dir, tmp_path):
    files = sorted(runs_dir.glob("*.json"))
    two = tmp_path / "two"
    two.mkdir()
    for f in files[:2]:
        shutil.copy(f, two)
    with pytest.raises(LeaderboardError, match="at least 3"):
        pack(two, out=tmp_path / "x.json", **SUBMITTER)
    mixed = tmp_path / "mixed"
    shutil.copytree(runs_dir, mixed, ignore=shutil.ignore_patterns("checkpoints"))
    other = json.loads(files[0].read_text())
    other["method"]["label"] = "kd[temperature=2]"
    (mixed / "other.json").write_text(json.dumps(other))
    with pytest.raises(LeaderboardError, match="mixes 2"):
        pack(mixed, out=tmp_path / "x.json", **SUBMITTER)
    assert not (tmp_path / "x.json").exists()


def _edit(edit):
    """A case that edits the packed bundle (a dict) and returns it, or returns the bytes to submit."""
    return edit


def _set(bundle, block, key, value):
    bundle[block][key] = value
    return bundle


def _set_all(bundle, path, value):
    for target in [bundle, *bundle["runs"]]:
        node = target
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return bundle


def _restate_oa(b):
    b["id"] = "kd-edited"
    b["runs"][0]["metrics"]["test"]["oa"] = round(1.0 - b["runs"][0]["metrics"]["test"]["oa"] / 2 - 0.01, 6)
    return b  # the summary is left: `ackd-bench table` (summarise) refuses a run whose claim is wrong


def _rehashed_predictions(b):
    """Predictions changed and rehashed, confusion faked to match them: only the true labels tell."""
    b["id"] = "kd-edited"
    run = b["runs"][0]
    pred = run["predictions"]
    pred["predicted"] = [0] * len(pred["predicted"])
    pred["sha256"] = hash_predictions(pred["sample_ids"], pred["predicted"])["sha256"]
    n = len(run["dataset"]["classes"])
    fake = classification_metrics(np.zeros(len(pred["predicted"]), dtype=np.int64), np.array(pred["predicted"]), n)
    fake["confusion"] = [[0] * n for _ in range(n)]
    fake["confusion"][0][0] = len(pred["predicted"])
    run["metrics"]["test"] = fake
    b["summary"] = summarise(b["runs"])
    return b


def _tamper(b):
    b["id"] = "kd-edited"
    p = b["runs"][0]["predictions"]["predicted"]
    p[0] = (p[0] + 1) % len(b["runs"][0]["dataset"]["classes"])
    return b


def _two_seeds(b):
    b["runs"] = b["runs"][:2]
    b["summary"]["seeds"] = b["summary"]["seeds"][:2] + [99]
    return b


def _duplicate_seed(b):
    b["runs"][1]["seed"] = b["runs"][0]["seed"]
    return b


def _other_profile(b):
    b["id"] = "kd-fast-profile"
    _set_all(b, ("protocol", "profile"), "fast")
    return _set_all(b, ("protocol", "epochs"), 12)


def _oversized(b):
    text = json.dumps(b)
    return (text + " " * (MAX_BYTES + 1 - len(text))).encode()


def _latin1(b):
    b["submitter"]["name"] = "José"
    return json.dumps(b, ensure_ascii=False).encode("latin-1")


BAD = [
    ("invalid-schema", lambda b: (b.pop("summary"), b)[1], "'summary' is a required property"),
    ("extra-key", lambda b: {**b, "score": 1.0}, "Additional properties"),
    ("unknown-fingerprint", lambda b: _set_all(_set_all(b, ("dataset", "fingerprint"), "0" * 64),
                                               ("dataset", "recipe_fingerprint"), "0" * 64),
     "not one of this board's datasets"),
    ("mismatched-fingerprint", lambda b: (b["runs"][1]["dataset"].update(fingerprint="f" * 64), b)[1],
     "dataset fingerprint is"),
    ("fewer-than-3-seeds", _two_seeds, "at least 3"),
    ("duplicate-seeds", _duplicate_seed, "repeat"),
    ("claimed-oa-wrong", _restate_oa, "stated metrics.test.oa"),
    ("summary-wrong", lambda b: (b["summary"].update(oa_mean=b["summary"]["oa_mean"] / 2 + 0.01), b)[1],
     "summary.oa_mean"),
    ("tampered-predictions", _tamper, "sha256 does not match"),
    ("rehashed-predictions", _rehashed_predictions, "disagrees with its predictions and the dataset's labels"),
    ("duplicate-id", lambda b: {**b, "created": "2020-01-01T00:00:00Z"}, "already on the board"),
    ("duplicate-content", lambda b: {**b, "id": "kd-copy"}, "same runs"),
    ("script-in-name", lambda b: (b["submitter"].update(name="<script>alert(1)</script>"), b)[1], "markup"),
    ("javascript-url", lambda b: (b["submitter"].update(code_url="javascript:alert(1)"), b)[1], "script URL"),
    ("http-paper-url", lambda b: (b["submitter"].update(paper_url="http://example.org"), b)[1], "https://"),
    ("control-characters", lambda b: (b["submitter"].update(affiliation="Lab\x1b[31m"), b)[1], "control characters"),
    # Markup in a shown field is refused, not only escaped; and so are invisible characters anywhere.
    ("html-tag-in-name", lambda b: _set(b, "submitter", "name", "<b>A</b>"), "submitter.name contains markup"),
    ("img-tag-in-label", lambda b: _set(b, "method", "label", "<img src=x onerror=alert(1)>"),
     "method.label contains markup"),
    ("angle-bracket-in-affiliation", lambda b: _set(b, "submitter", "affiliation", "Lab > Others"),
     "submitter.affiliation contains markup"),
    ("entity-in-licence", lambda b: _set(b, "submitter", "licence", "&lt;b&gt;MIT"),
     "submitter.licence contains markup"),
    ("markdown-link-in-name", lambda b: _set(b, "submitter", "name", "[A](https://evil.example)"),
     "submitter.name contains markup"),
    ("zero-width-space-in-name", lambda b: _set(b, "submitter", "name", "A. Au\u200bthor"),
     "submitter.name contains invisible or control characters (U+200B)"),
    ("bidi-override-in-label", lambda b: _set(b, "method", "label", "\u202ekd"), "method.label contains invisible"),
    ("lrm-in-affiliation", lambda b: _set(b, "submitter", "affiliation", "Lab\u200e"), "(U+200E)"),
    ("isolate-in-licence", lambda b: _set(b, "submitter", "licence", "\u2066MIT\u2069"), "(U+2066)"),
    ("bom-in-name", lambda b: _set(b, "submitter", "name", "\ufeffA. Author"), "(U+FEFF)"),
    ("decomposed-name", lambda b: _set(b, "submitter", "name", "Jose\u0301"), "submitter.name is not in composed"),
    ("path-traversal-id", lambda b: {**b, "id": "../x"}, "schema: id"),
    ("oversized", _oversized, "10 MB"),
    ("not-utf8", _latin1, "not UTF-8"),
    ("not-json", lambda b: b"{\"format\": ", "not valid JSON"),
    ("profile-mismatch", _other_profile, "protocol differs"),
]


@pytest.mark.parametrize(("edit", "message"), [pytest.param(e, m, id=i) for i, e, m in BAD])
def test_bad_submission_is_refused_and_board_untouched(edit, message, bundle_file, board, tmp_path):
    bundle = edit(copy.deepcopy(json.loads(bundle_file.read_text())))
    data = bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode()
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    before = _tree_hash(board)
    with pytest.raises(LeaderboardError, match="submission refused") as err:
        submit(bad, board)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert _tree_hash(board) == before
    res = CliRunner().invoke(main, ["leaderboard", "submit", str(bad), "--board", str(board)])
    assert res.exit_code == 1 and message in res.output
    assert _tree_hash(board) == before


def test_ids_cannot_leave_the_submissions_folder(board):
    for bad in ("../x", "a/../../b", "..", "ok/../../etc"):
        with pytest.raises(LeaderboardError, match="must match"):
            submission_path(board, bad)


def test_validate_without_a_board_checks_hashes_and_claims(bundle_file):
    bundle = _tamper(json.loads(bundle_file.read_text()))
    assert any("sha256" in p for p in find_problems(json.dumps(bundle).encode()))
    assert any("summary" in p for p in find_problems(json.dumps(
        {**json.loads(bundle_file.read_text()), "summary": {**bundle["summary"], "oa_std": 0.5}}).encode()))


def test_failed_render_takes_the_submission_back(tiny, bundle_file, tmp_path):
    board = init(tmp_path / "board", [tiny])
    (board / "site").write_text("a file where the site folder should be")
    before = _tree_hash(board)
    with pytest.raises(LeaderboardError, match="was not added: rendering the board failed"):
        submit(bundle_file, board)
    assert _tree_hash(board) == before


def test_pack_composes_text_and_refuses_invisible_characters(runs_dir, tmp_path):
    who = {**SUBMITTER, "name": "Jose\u0301 Tester"}  # a combining accent: packed as one character (NFC)
    bundle = json.loads(pack(runs_dir, out=tmp_path / "nfc.json", **who).read_text(encoding="utf-8"))
    assert bundle["submitter"]["name"] == "Jos\u00e9 Tester"
    assert find_problems(tmp_path / "nfc.json") == []
    with pytest.raises(LeaderboardError, match=r"submitter.name contains invisible .*U\+200B"):
        pack(runs_dir, out=tmp_path / "zw.json", **{**SUBMITTER, "name": "A. Te\u200bster"})
    assert not (tmp_path / "zw.json").exists()


NOT_A_BOARD = "is not a leaderboard board (no datasets.json); create one with `ackd-bench leaderboard init --board"


@pytest.mark.parametrize("command", ["validate", "submit", "render"])
def test_commands_refuse_a_folder_that_is_not_a_board(command, bundle_file, tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "missing", tmp_path / "empty"):
        args = [str(target)] if command == "render" else [str(bundle_file), "--board", str(target)]
        res = CliRunner().invoke(main, ["leaderboard", command, *args])
        assert res.exit_code == 1 and f"{target} {NOT_A_BOARD}" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists() and not list((tmp_path / "empty").iterdir())


CORRUPT = [  # (file under the board, its bytes, what the one-line error says)
    ("datasets.json", b'[{"name": "x"', "datasets.json: not valid JSON at line 1"),
    ("datasets.json", b"\xff\xfe", "datasets.json is not UTF-8 text"),
    ("datasets.json", b'{"name": "x"}', "datasets.json is not an ackd-bench board datasets file"),
    ("submissions/kd-other.json", b'{"id": "kd-other", ', "kd-other.json: not valid JSON"),
    ("submissions/kd-other.json", b'{"id": "somebody-else"}', "kd-other.json holds id 'somebody-else'"),
    ("submissions/kd-other.json", b'{"id": "kd-other"}', "kd-other.json is not a complete submission"),
    ("submissions/notes.txt", b"stray notes", "notes.txt is not a submission"),
]


@pytest.mark.parametrize(("name", "data", "message"), CORRUPT)
def test_submit_names_a_corrupt_board_file(name, data, message, tiny, bundle_file, tmp_path):
    board = init(tmp_path / "board", [tiny])
    (board / name).write_bytes(data)
    before = _tree_hash(board)
    res = CliRunner().invoke(main, ["leaderboard", "submit", str(bundle_file), "--board", str(board)])
    assert res.exit_code == 1 and message in res.output, res.output
    assert str(board / name) in res.output and len(res.output.strip().splitlines()) == 1
    assert _tree_hash(board) == before


@pytest.fixture(scope="module")
def drifted_runs(tmp_path_factory) -> Path:
    """Three seeds run on a build of the tiny dataset's recipe whose MS bytes differ (one bit of one chip),
    as another machine's GDAL might read them."""
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=4, ms_px=16, rgb_px=32)
    arrays = {m: a.copy() for m, a in arrays.items()}
    arrays["ms"][0, 0, 0, 0] ^= 1
    drifted = write_dataset(tmp_path_factory.mktemp("drift") / "ds", manifest=manifest, samples=samples, arrays=arrays)
    return _three_seeds(drifted, "dkd", tmp_path_factory)


def test_a_board_accepts_runs_on_the_same_recipe_and_reports_the_content_drift(tiny, drifted_runs, tmp_path):
    from ackd_bench.benchmark.dataset import load_dataset

    ours = load_dataset(tiny)
    run = json.loads(next(drifted_runs.glob("*.json")).read_text())
    assert run["dataset"]["fingerprint"] != ours.fingerprint  # other bytes ...
    assert run["dataset"]["recipe_fingerprint"] == ours.recipe_fingerprint  # ... same recipe
    bundle = pack(drifted_runs, out=tmp_path / "dkd.json", **SUBMITTER)
    board = init(tmp_path / "board", [tiny])
    submit(bundle, board)  # accepted: checked against the board dataset's true labels
    page = (board / "LEADERBOARD.md").read_text()
    sid = json.loads(bundle.read_text())["id"]
    assert page.count("## ") == 1  # the board dataset's one table, not a second one for the drifted build
    assert f"Content drift: {sid} (content {run['dataset']['fingerprint'][:12]})" in page
    assert "Content drift" in (board / "site" / "index.html").read_text()
    # A different recipe is still refused.
    other = json.loads(bundle.read_text())
    other["id"] = "other-recipe"
    other["dataset"]["recipe_fingerprint"] = "0" * 64
    for r in other["runs"]:
        r["dataset"]["recipe_fingerprint"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(LeaderboardError, match="is not one of this board's datasets"):
        submit(tmp_path / "other.json", board)
