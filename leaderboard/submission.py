"""Leaderboard submissions: pack `ackd-bench run` output into a bundle, and check a bundle line by line."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.results import (
    ResultSchemaError,
    load_run_results,
    run_label,
    validate_run_result,
)

FORMAT = "ackd-bench-submission"
FORMAT_VERSION = 1
SCHEMA_FILE = "submission-v1.schema.json"
MAX_BYTES = 10 * 1024 * 1024  # refused before parsing: a board is a git repo, not a file store
MIN_SEEDS = 3
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")
# Summary values recomputed from the runs; float tolerance covers JSON round trips only.
TOLERANCE = 1e-9
# Text that a rendered board page must never carry, in any field: HTML tags, comments and script URLs.
_FORBIDDEN_TEXT = re.compile(r"<\s*/?\s*[a-z!?]|javascript\s*:|vbscript\s*:|data\s*:\s*text/html", re.IGNORECASE)
# The fields a board page shows are plain text: no '<' or '>', HTML entities or Markdown links/images either,
# and composed (NFC), so that two names that look the same are the same string.
SHOWN_FIELDS = ("submitter.name", "submitter.affiliation", "submitter.licence", "method.name", "method.label",
                "teacher_arch", "student_arch", "dataset.name", "dataset.version")
_SHOWN_MARKUP = re.compile(r"[<>]|&(#[0-9]+|#x[0-9a-f]+|[a-z][a-z0-9]*);|\]\s*\(|!\[", re.IGNORECASE)
# Invisible or layout-changing characters, refused everywhere: controls (Cc), format characters such as
# zero-width spaces, bidi controls and the BOM (Cf), surrogates (Cs), private use (Co), line and
# paragraph separators (Zl, Zp). "A. Te\u200bster" would otherwise show as "A. Tester".
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
URL_FIELDS = ("code_url", "paper_url")


class LeaderboardError(AckdBenchError):
    """A submission or a board is refused; the message says what is wrong and what to do."""


@cache
def submission_schema() -> dict[str, Any]:
    """The shipped JSON Schema (draft 2020-12) of a submission bundle."""
    return json.loads(resources.files("ackd_bench.leaderboard").joinpath("schemas", SCHEMA_FILE).read_text("utf-8"))


def slug(text: str) -> str:
    """A submission id from free text: lower case, runs of other characters become ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")


def pack(results_dir: Path, *, out: Path, name: str, affiliation: str, code_url: str, paper_url: str = "",
         licence: str, submission_id: str | None = None) -> Path:
    """Bundle every seed of one method in ``results_dir`` (``ackd-bench run`` output) into a submission.

    Args:
        results_dir: Folder of RunResult JSON files, all of one (method label, teacher arch,
            student arch, dataset fingerprint), at least three seeds.
        out: The bundle file to write (atomically).
        name: the submitter's name (the ``submitter`` block).
        affiliation: the submitter's affiliation.
        code_url: https:// URL of the code that produced the runs.
        paper_url: https:// URL of the paper, if any.
        licence: licence of the submitted results, e.g. CC-BY-4.0.
        submission_id: The bundle's id; default ``<label>-<teacher>-<student>-<fingerprint[:8]>``.

    Returns:
        ``out``.

    Raises:
        LeaderboardError: the folder mixes several methods/pairs/datasets, has too few or duplicate
            seeds, holds runs without predictions, or the bundle would not validate.
    """
    from ackd_bench.benchmark.dataset.files import atomic_write_text

    # Composed Unicode (NFC), as validation requires: a name typed with combining accents is the same name.
    name, affiliation, licence = (unicodedata.normalize("NFC", t) for t in (name, affiliation, licence))
    try:
        runs = load_run_results([Path(results_dir)])
    except ResultSchemaError as err:
        raise LeaderboardError(f"cannot pack {results_dir}: {err}") from err
    if not runs:
        raise LeaderboardError(f"no RunResult JSON files in {results_dir}; run `ackd-bench run` first")
    groups = sorted({_run_key(r) for r in runs})
    if len(groups) > 1:
        listed = "; ".join(f"{label} {t}→{s} on {fp[:12]}" for label, t, s, fp in groups)
        raise LeaderboardError(f"{results_dir} mixes {len(groups)} method/architecture/dataset combinations "
                               f"({listed}); put one combination's seeds in a folder of its own")
    missing = [r["run_id"] for r in runs if "predictions" not in r]
    if missing:
        raise LeaderboardError(f"run {missing[0]!r} has no test predictions; rerun it with this ackd-bench version")
    runs.sort(key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise LeaderboardError(f"{results_dir} holds a seed twice ({seeds}); keep one run per seed")
    if len(seeds) < MIN_SEEDS:
        raise LeaderboardError(f"{results_dir} has {len(seeds)} seed(s) ({seeds}); a submission needs at least "
                               f"{MIN_SEEDS}, e.g. `ackd-bench run ... --seeds 0,1,2`")
    label, teacher_arch, student_arch, _ = groups[0]
    d = runs[0]["dataset"]
    bundle = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "id": submission_id or slug(f"{label}-{teacher_arch}-{student_arch}-{d['fingerprint'][:8]}"),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "submitter": {"name": name, "affiliation": affiliation, "code_url": code_url, "paper_url": paper_url,
                      "licence": licence},
        "method": {"name": runs[0]["method"]["name"], "label": label},
        "teacher_arch": teacher_arch, "student_arch": student_arch,
        "dataset": {"name": d["name"], "version": d["version"], "fingerprint": d["fingerprint"],
                    **({"recipe_fingerprint": d["recipe_fingerprint"]} if "recipe_fingerprint" in d else {})},
        "protocol": runs[0]["protocol"],
        "runs": runs,
        "summary": summarise(runs),
    }
    text = json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False)
    problems = find_problems(text.encode("utf-8"))
    if problems:
        raise LeaderboardError(f"the bundle would be refused: {'; '.join(problems)}")
    atomic_write_text(Path(out), text + "\n")
    return Path(out)


def _run_key(run: dict[str, Any]) -> tuple[str, str, str, str]:
    return run_label(run), run["teacher"]["arch"], run["student"]["arch"], run["dataset"]["fingerprint"]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``summary`` block: test OA mean, std and bootstrap CI (as ``ackd-bench table``), macro-F1 mean.

    Fractions in [0, 1] (the table works in percent).
    """
    from ackd_bench.benchmark.table import aggregate  # scipy and pandas: only when summarising

    oa = _method_row(aggregate(runs, metric="oa"))
    f1 = _method_row(aggregate(runs, metric="macro_f1"))
    return {"seeds": oa["seeds"], "oa_mean": oa["mean"] / 100, "oa_std": oa["std"] / 100,
            "oa_ci_low": oa["ci_low"] / 100, "oa_ci_high": oa["ci_high"] / 100, "macro_f1_mean": f1["mean"] / 100}


def _method_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    methods = [r for r in rows if r["kind"] == "method"]
    if len(methods) != 1:
        raise LeaderboardError(f"the runs form {len(methods)} table rows, not one")
    return methods[0]


def read_bundle(source: Path | str | bytes) -> dict[str, Any]:
    """Read a bundle: size limit first, then strict UTF-8 and strict JSON (no NaN, no repeated keys).

    Raises:
        LeaderboardError: too big, not UTF-8, not JSON, or not a JSON object.
    """
    where = "submission" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise LeaderboardError(f"{path}: no such file")
        if path.stat().st_size > MAX_BYTES:
            raise LeaderboardError(f"{where}: {path.stat().st_size} bytes is over the {MAX_BYTES} byte "
                                   "(10 MB) limit of a submission")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # the file may grow between stat and read
    if len(data) > MAX_BYTES:
        raise LeaderboardError(f"{where}: over the {MAX_BYTES} byte (10 MB) limit of a submission")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LeaderboardError(f"{where}: not UTF-8 (byte {err.start}); save the file as UTF-8") from err
    from ackd_bench.benchmark.boundary import InputError, parse_json

    try:  # depth pre-scanned, no NaN/Infinity, no repeated keys
        bundle = parse_json(text, where=where, unique_keys=True)
    except InputError as err:
        raise LeaderboardError(str(err)) from err
    if not isinstance(bundle, dict):
        raise LeaderboardError(f"{where}: a submission must be a JSON object")
    return bundle


def find_problems(source: Path | str | bytes, board: Path | None = None) -> list[str]:
    """Every reason to refuse a bundle (empty: it is valid).

    Without ``board`` the metrics are checked for consistency with the predictions' hash and the
    summary only; with it, against the true test labels of the board's registered dataset, and
    the board's rules (known dataset, same protocol as its other submissions, no duplicates).
    """
    try:
        bundle = read_bundle(source)
    except LeaderboardError as err:
        return [str(err)]
    return check_bundle(bundle, board)


def validate(source: Path | str | bytes, board: Path | None = None) -> dict[str, Any]:
    """Check a bundle (see :func:`find_problems`) and return it parsed.

    Raises:
        LeaderboardError: one line listing every problem found, or ``board`` is not a board.
    """
    if board is not None:
        from ackd_bench.leaderboard.board import require_board

        require_board(board)  # a mistyped --board is named before any problem of the bundle
    try:
        bundle = read_bundle(source)
    except LeaderboardError as err:
        raise LeaderboardError(f"submission refused (1 problem): {err}") from err
    problems = check_bundle(bundle, board)
    if problems:
        n = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise LeaderboardError(f"submission refused ({n}): {'; '.join(problems)}")
    return bundle


def check_bundle(bundle: dict[str, Any], board: Path | None = None) -> list[str]:
    """The problems of a parsed bundle: schema, text safety, run consistency, hashes, metrics, summary."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(submission_schema())
    schema_errors = sorted(validator.iter_errors(bundle), key=lambda e: list(e.absolute_path))
    problems = [f"schema: {_where(e.absolute_path)} {_schema_message(e)}" for e in schema_errors[:5]]
    problems += unsafe_text(bundle)
    if problems:
        return problems  # the checks below rely on the shape
    runs = bundle["runs"]
    for i, run in enumerate(runs):
        try:
            validate_run_result(run, source=f"runs[{i}]")
        except ResultSchemaError as err:
            problems.append(str(err))
    if problems:
        return problems
    problems += _check_runs_agree(bundle)
    if problems:
        return problems
    labels = None
    if board is not None:
        from ackd_bench.leaderboard.board import board_problems, true_labels  # board imports this module

        problems += board_problems(bundle, Path(board))
        labels = true_labels(Path(board), bundle["dataset"])
    for i, run in enumerate(runs):
        problems += _check_predictions(run, f"runs[{i}] (seed {run['seed']})", labels)
    claimed = bundle["summary"]
    try:
        recomputed = summarise(runs)
    except ResultSchemaError as err:  # the table refuses runs whose claims disagree with their evidence
        return problems or [str(err)]
    for key, value in recomputed.items():
        if key == "seeds" and sorted(claimed["seeds"]) != value:
            problems.append(f"summary.seeds {claimed['seeds']} are not the runs' seeds {value}")
        elif key != "seeds" and not math.isclose(claimed[key], value, rel_tol=0, abs_tol=TOLERANCE):
            problems.append(f"summary.{key} {claimed[key]!r} does not match {value!r} recomputed from the runs")
    return problems


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _schema_message(error) -> str:
    """jsonschema's message, without echoing a large offending value back."""
    rule, value = error.validator, error.validator_value
    if rule == "minItems":
        return f"has {len(error.instance)} item(s); at least {value} are needed"
    if rule == "pattern":
        return f"{_brief(error.instance)} does not match {value}"
    if rule == "const":
        return f"must be {value!r}"
    if rule == "anyOf" and error.absolute_path and error.absolute_path[-1] == "paper_url":
        return f"{_brief(error.instance)} must be an https:// URL or empty"
    return error.message if len(error.message) <= 160 else error.message[:157] + "..."


def unsafe_text(value: Any, path: str = "") -> list[str]:
    """Problems of text a rendered page would show: markup, script URLs, invisible characters, bad URLs.

    Every string (and key) is checked for HTML tags, script URLs and control, format (zero-width,
    bidi) and separator characters; the fields the page shows (:data:`SHOWN_FIELDS`) must moreover
    be plain text without ``<``, ``>``, HTML entities or Markdown links, in composed Unicode (NFC).
    """
    problems: list[str] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            problems += _unsafe_string(str(key), f"key of {where}")
            problems += unsafe_text(sub, where)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            problems += unsafe_text(sub, f"{path}[{i}]")
    elif isinstance(value, str):
        problems += _unsafe_string(value, path)
    return problems


def _unsafe_string(text: str, where: str) -> list[str]:
    found = _FORBIDDEN_TEXT.search(text) or (_SHOWN_MARKUP.search(text) if where in SHOWN_FIELDS else None)
    if found:
        return [f"{where} contains markup or a script URL ({found.group(0)!r}); plain text only"]
    invisible = next((c for c in text if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)
    if invisible is not None:
        return [f"{where} contains invisible or control characters (U+{ord(invisible):04X}); "
                "plain one-line text only"]
    if where in SHOWN_FIELDS and unicodedata.normalize("NFC", text) != text:
        return [f"{where} is not in composed Unicode form (NFC); write accents as single characters, "
                "as `ackd-bench leaderboard pack` does"]
    if where in (f"submitter.{f}" for f in URL_FIELDS) and text and not text.startswith("https://"):
        return [f"{where} must be an https:// URL"]
    return []


def _check_runs_agree(bundle: dict[str, Any]) -> list[str]:
    """All runs are one (method, pair, dataset, protocol), matching the bundle's own fields; seeds distinct."""
    problems = []
    runs = bundle["runs"]
    expected = {
        "dataset fingerprint": bundle["dataset"]["fingerprint"], "dataset name": bundle["dataset"]["name"],
        "dataset recipe": bundle["dataset"].get("recipe_fingerprint"),
        "dataset version": bundle["dataset"]["version"], "method label": bundle["method"]["label"],
        "method name": bundle["method"]["name"], "teacher arch": bundle["teacher_arch"],
        "student arch": bundle["student_arch"], "protocol": bundle["protocol"],
    }
    for i, run in enumerate(runs):
        got = {
            "dataset fingerprint": run["dataset"]["fingerprint"], "dataset name": run["dataset"]["name"],
            "dataset recipe": run["dataset"].get("recipe_fingerprint"),
            "dataset version": run["dataset"]["version"], "method label": run_label(run),
            "method name": run["method"]["name"], "teacher arch": run["teacher"]["arch"],
            "student arch": run["student"]["arch"], "protocol": run["protocol"],
        }
        for what, value in expected.items():
            if got[what] != value:
                shown = "differs" if what == "protocol" else f"is {got[what]!r}, not {value!r}"
                problems.append(f"runs[{i}] (seed {run['seed']}): {what} {shown} as in the bundle; "
                                "a submission holds the seeds of one method, pair, dataset and protocol")
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        problems.append(f"seeds {seeds} repeat; each run must have its own seed")
    elif len(seeds) < MIN_SEEDS:
        problems.append(f"{len(seeds)} seeds; at least {MIN_SEEDS} are needed")
    return problems


def _check_predictions(run: dict[str, Any], where: str, labels: dict[str, int] | None) -> list[str]:
    """Every claimed metric of the run recomputed from its evidence: the predictions (checked against their
    hash) and, when the board knows them, the true labels (`results.verify_run_metrics`, as `table` does)."""
    from ackd_bench.benchmark.results import ResultSchemaError, verify_run_metrics

    try:
        verify_run_metrics(run, source=where, labels=labels)
    except ResultSchemaError as err:
        return [str(err)]
    return []


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
