"""Render a leaderboard directory (submissions/*.json + datasets.json) to LEADERBOARD.md and a static site.

The output is a pure function of the board's files: the same submissions give byte-identical
LEADERBOARD.md, site/index.html and site/ranking.svg (no "generated at" stamps, every list sorted).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.files import atomic_write_bytes
from ackd_bench.leaderboard.submission import LeaderboardError, read_bundle
from ackd_bench.leaderboard.transaction import begin, board_lock, end, pause_point, recover

MARKDOWN_FILE = "LEADERBOARD.md"
SITE_DIR = "site"
HTML_FILE = "index.html"
PLOT_FILE = "ranking.svg"
FINGERPRINT_SHOWN = 12  # hex digits of the dataset fingerprint shown in headings

# Only plain https URLs become links; anything else (javascript:, data:, http:, quotes, spaces,
# markdown/HTML delimiters) is shown as inert text.
_SAFE_URL = re.compile(r"https://[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]+")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()|~])")


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a submission's displayed fields, with its rank within its dataset."""

    rank: int
    id: str
    method: str
    teacher: str
    student: str
    oa_mean: float
    oa_std: float | None
    ci_low: float | None
    ci_high: float | None
    macro_f1: float | None
    seeds: tuple[str, ...]
    submitter: str
    affiliation: str
    code_url: str
    paper_url: str
    date: str
    content: str = ""  # the content fingerprint of the build the runs were made on


@dataclass(frozen=True)
class Board:
    """The rows of one dataset's table, best first; ``known`` is False when datasets.json lacks it."""

    name: str
    version: str
    fingerprint: str
    known: bool
    entries: tuple[Entry, ...]

    @property
    def title(self) -> str:
        return f"{self.name} {self.version} ({self.fingerprint[:FINGERPRINT_SHOWN]})"


def safe_url(url: Any) -> str | None:
    """Return ``url`` if it is a plain https:// URL that is safe to put in an href, else None."""
    return url if isinstance(url, str) and _SAFE_URL.fullmatch(url) else None


def load_boards(board: Path, staged: Sequence[Path] = ()) -> list[Board]:
    """Read a board directory into one :class:`Board` per dataset, in datasets.json order.

    Datasets listed in datasets.json without submissions get an empty table; submissions for a
    dataset not listed there come after, sorted by name, version and fingerprint.

    Args:
        board: The board folder.
        staged: Submission files shown as well, though not yet in ``submissions/`` (a submit in progress).

    Raises:
        LeaderboardError: ``board`` is not a board, or one of its files cannot be read or shown (named).
    """
    from ackd_bench.leaderboard.board import board_entry, board_submission_files, read_datasets

    board = Path(board)
    listed = read_datasets(board)
    by_fingerprint = {d["fingerprint"]: d for d in listed}
    keys = [(d["name"], d["version"], d["fingerprint"]) for d in listed]
    groups: dict[tuple[str, str, str], list[dict]] = {k: [] for k in keys}
    for path, sub in [*board_submission_files(board), *((p, read_bundle(p)) for p in staged)]:
        try:
            ds = sub["dataset"]
            entry, _ = board_entry(by_fingerprint, ds)  # a drifted build of a board dataset joins its table
            key = ((entry["name"], entry["version"], entry["fingerprint"]) if entry is not None
                   else (str(ds["name"]), str(ds["version"]), str(ds["fingerprint"])))
            _sort_key(sub), _entry(sub, 0)  # every shown field is there and of its type
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise LeaderboardError(f"{path} cannot be shown (missing or mistyped field: {err}); restore it from the "
                                   "board's git history or move it out of the board") from err
        groups.setdefault(key, []).append(sub)
    ordered = keys + sorted(k for k in groups if k not in set(keys))
    return [Board(*k, known=k in set(keys), entries=_rank(groups[k])) for k in ordered]


def _sort_key(s: dict) -> tuple:
    summary = s["summary"]
    return (-float(summary["oa_mean"]), -_num(summary.get("oa_ci_low"), float("-inf")),
            str(s["method"].get("label") or s["method"]["name"]), str(s["id"]))


def _rank(subs: list[dict]) -> tuple[Entry, ...]:
    """Entries best first by OA mean (then CI lower bound, label, id); equal OA means share a rank."""
    entries: list[Entry] = []
    previous = None
    for i, s in enumerate(sorted(subs, key=_sort_key)):
        oa = float(s["summary"]["oa_mean"])
        rank = entries[-1].rank if previous == oa else i + 1
        previous = oa
        entries.append(_entry(s, rank))
    return tuple(entries)


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _entry(s: dict, rank: int) -> Entry:
    summary, who = s["summary"], s.get("submitter") or {}
    return Entry(
        rank=rank, id=str(s["id"]), method=str(s["method"].get("label") or s["method"]["name"]),
        teacher=str(s.get("teacher_arch", "")), student=str(s.get("student_arch", "")),
        oa_mean=float(summary["oa_mean"]), oa_std=_opt(summary.get("oa_std")),
        ci_low=_opt(summary.get("oa_ci_low")), ci_high=_opt(summary.get("oa_ci_high")),
        macro_f1=_opt(summary.get("macro_f1_mean")),
        seeds=tuple(str(x) for x in summary.get("seeds", [])),
        submitter=str(who.get("name", "")), affiliation=str(who.get("affiliation", "")),
        code_url=str(who.get("code_url") or ""), paper_url=str(who.get("paper_url") or ""),
        date=str(s.get("created", ""))[:10], content=str(s["dataset"]["fingerprint"]),
    )


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals, or an en dash when missing."""
    return "–" if x is None else f"{100 * x:.2f}"


def oa_text(e: Entry) -> str:
    return pct(e.oa_mean) if e.oa_std is None else f"{pct(e.oa_mean)} ± {pct(e.oa_std)}"


def ci_text(e: Entry) -> str:
    return "–" if e.ci_low is None or e.ci_high is None else f"[{pct(e.ci_low)}, {pct(e.ci_high)}]"


def md_escape(text: str) -> str:
    """Make ``text`` inert inside a GitHub Markdown table cell: no markup, links, HTML or cell breaks."""
    text = " ".join(str(text).split())  # newlines would end the table row
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_link(label: str, url: str) -> str:
    ok = safe_url(url)  # a safe URL holds no spaces, brackets, parentheses, '<', '>' or '|'
    if ok is not None:
        return f"[{label}]({ok})"
    # Anything else as a code span, which GitHub neither autolinks nor parses as HTML ('|' still
    # needs its backslash inside a table); a URL with backticks or line breaks is left out.
    if "`" in url or len(url.split()) != 1 or "\\" in url:
        return f"{label}: (not linked)"
    return f"{label}: `{url.replace('|', chr(92) + '|')}`"


def render_markdown(boards: list[Board]) -> str:
    """LEADERBOARD.md: one table per dataset, ranked by mean test OA."""
    out = ["# ackd-bench leaderboard", "",
           ("Test overall accuracy (OA, %) as mean ± std over seeds, with the 95 % CI of the mean; "
           "ranked by mean OA. The sortable, filterable version is `site/index.html`."), ""]
    for b in boards:
        out += [f"## {md_escape(b.title)}", ""]
        if not b.known:
            out += ["_Dataset not listed in datasets.json._", ""]
        if not b.entries:
            out += ["_No submissions yet._", ""]
            continue
        out += [("| Rank | Method | Teacher → Student | OA (%) | 95 % CI | Macro-F1 (%) | Seeds | Submitter "
                "| Links | Date |"), "|---:|---|---|---:|---:|---:|---|---|---|---|"]
        for e in b.entries:
            who = md_escape(e.submitter) + (f" ({md_escape(e.affiliation)})" if e.affiliation else "")
            links = ", ".join(_md_link(k, u) for k, u in (("code", e.code_url), ("paper", e.paper_url)) if u)
            cells = [str(e.rank), md_escape(e.method), f"{md_escape(e.teacher)} → {md_escape(e.student)}",
                     oa_text(e), ci_text(e), pct(e.macro_f1), md_escape(",".join(e.seeds)), who, links,
                     md_escape(e.date)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += [f"{line}" for line in drift_notes(b)]
    return "\n".join(out)


def drift_notes(b: Board) -> list[str]:
    """A note naming the rows whose runs were made on a build of the same recipe with other content."""
    drifted = [e for e in b.entries if e.content and e.content != b.fingerprint]
    if not drifted:
        return []
    rows = ", ".join(f"{e.id} (content {e.content[:FINGERPRINT_SHOWN]})" for e in drifted)
    return [f"Content drift: {rows} ran on a build of this dataset's recipe whose content fingerprint differs "
            f"from the board's {b.fingerprint[:FINGERPRINT_SHOWN]} (same chips, splits and labels; some bytes "
            f"differ, e.g. another GDAL).", ""]


def render_plot(boards: list[Board]) -> bytes:
    """ranking.svg: per dataset, each entry's mean OA with its 95 % CI, best at the top.

    SVG keeps the plot a deterministic text file: fixed hash salt, no date/creator metadata, text
    kept as text, and math parsing off so that a '$' in a label is just a character.
    """
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    shown = [b for b in boards if b.entries] or boards[:1]
    rows = sum(max(1, len(b.entries)) for b in shown)
    rc = {"svg.hashsalt": "ackd-bench-leaderboard", "svg.fonttype": "none", "text.parse_math": False,
          "path.simplify": False}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(8.0, 1.2 + 0.35 * rows + 0.9 * len(shown)), layout="constrained")
        FigureCanvasSVG(fig)
        if not shown:
            fig.text(0.5, 0.5, "No datasets", ha="center")
        heights = [max(1, len(b.entries)) for b in shown]
        axes = fig.subplots(len(shown), 1, squeeze=False, height_ratios=heights)[:, 0] if shown else []
        for ax, b in zip(axes, shown):
            ax.set_title(b.title, loc="left", fontsize=10)
            if not b.entries:
                ax.text(0.5, 0.5, "No submissions yet", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            ys = list(range(len(b.entries)))[::-1]
            means = [100 * e.oa_mean for e in b.entries]
            # Clamped at 0: a submitted CI that does not contain its mean must not break the plot.
            lows = [max(0.0, 100 * (e.oa_mean - e.ci_low)) if e.ci_low is not None else 0 for e in b.entries]
            highs = [max(0.0, 100 * (e.ci_high - e.oa_mean)) if e.ci_high is not None else 0 for e in b.entries]
            ax.errorbar(means, ys, xerr=[lows, highs], fmt="o", color="#1f5fa8", ecolor="#555", capsize=3)
            labels = [f"{e.rank}. {e.method} ({e.teacher}→{e.student})" for e in b.entries]
            ax.set_yticks(ys, labels, fontsize=8)
            ax.set_xlabel("test OA (%), mean with 95 % CI")
            ax.grid(axis="x", alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def page_files(board: Path, staged: Sequence[Path] = ()) -> dict[Path, bytes]:
    """The board's LEADERBOARD.md, site/index.html and site/ranking.svg, computed but not written.

    Args:
        board: The board folder.
        staged: Submission files to show as well (see :func:`load_boards`).

    Returns:
        ``{path: content}``, the Markdown page last.

    Raises:
        LeaderboardError: a board file cannot be read or shown, or ``site`` is not a folder.
    """
    from ackd_bench.leaderboard.render_html import render_html

    board = Path(board)
    boards = load_boards(board, staged)
    site = board / SITE_DIR
    if site.exists() and not site.is_dir():
        raise LeaderboardError(f"{site} is not a folder; move it away so that the page can be written there")
    return {site / PLOT_FILE: render_plot(boards), site / HTML_FILE: render_html(boards, plot=PLOT_FILE).encode(),
            board / MARKDOWN_FILE: render_markdown(boards).encode()}


def write_page_files(files: dict[Path, bytes]) -> None:
    """Write :func:`page_files`' output, each file atomically (the set of them is kept whole by the journal)."""
    for i, (path, data) in enumerate(files.items()):
        if i:
            pause_point("rendering")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)


def render_board(board: Path) -> None:
    """Render ``board``'s LEADERBOARD.md, site/index.html and site/ranking.svg from its submissions.

    A pure function of submissions/*.json and datasets.json: rendering twice gives identical bytes.
    Each file is written atomically, under the board's lock, after completing an interrupted submit
    (see :mod:`ackd_bench.leaderboard.transaction`).

    Args:
        board: The board directory.

    Raises:
        LeaderboardError: ``board`` is not a board, or one of its files cannot be read or shown (named).
    """
    from ackd_bench.leaderboard.board import require_board

    board = require_board(board)
    with board_lock(board):
        if not recover(board):
            files = page_files(board)
            begin(board, {"op": "render"})
            write_page_files(files)
            end(board)
