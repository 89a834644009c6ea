"""Rendering a leaderboard: determinism, ranking, escaping and no external resources (without a browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ackd_bench.leaderboard.render import load_boards, md_escape, render_board, safe_url
from leaderboard_board import BIGEARTH, EUROSAT, XSS_NAME, submissions, write_board

OUTPUTS = ("LEADERBOARD.md", "site/index.html", "site/ranking.svg")


@pytest.fixture
def board(tmp_path: Path) -> Path:
    root = write_board(tmp_path / "board")
    render_board(root)
    return root


def _read(board: Path) -> dict[str, bytes]:
    return {name: (board / name).read_bytes() for name in OUTPUTS}


def test_render_is_deterministic(board: Path, tmp_path: Path) -> None:
    first = _read(board)
    assert all(first.values())
    render_board(board)
    assert _read(board) == first
    # A fresh directory with the same submissions (written in another order) renders the same bytes.
    other = write_board(tmp_path / "other", list(reversed(submissions())))
    render_board(other)
    assert _read(other) == first
    assert not list(board.rglob(".*.tmp-*"))


def test_tables_rank_by_mean_oa(board: Path) -> None:
    boards = load_boards(board)
    assert [(b.name, b.version) for b in boards] == [(EUROSAT["name"], EUROSAT["version"]),
                                                      (BIGEARTH["name"], BIGEARTH["version"])]
    assert [(e.rank, e.id) for e in boards[0].entries] == [(1, "sub-sembridge"), (2, "sub-dkd"), (3, "sub-xss")]
    assert [e.id for e in boards[1].entries] == ["sub-big"]

    md = (board / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert f"## eurosat-demo 1.0.0 \\({EUROSAT['fingerprint'][:12]}\\)" in md
    assert md.index("## eurosat") < md.index("## bigearth")
    rows = [line for line in md.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert rows[0].startswith("| 1 | SemBridge | resnet50 → resnet18 | 86.50 ± 0.50 | [86.00, 87.00] | 85.50 | 0,1,2 |")
    assert "[code](https://example.org/sb), [paper](https://arxiv.org/abs/2501.00001) | 2026-02-01 |" in rows[0]

    html = (board / "site" / "index.html").read_text(encoding="utf-8")
    ids = re.findall(r'data-id="([^"]+)"', html)
    assert ids == ["sub-sembridge", "sub-dkd", "sub-xss", "sub-big"]


def test_equal_means_share_a_rank(tmp_path: Path) -> None:
    subs = submissions()[:2]
    subs[1]["summary"]["oa_mean"] = subs[0]["summary"]["oa_mean"]
    root = write_board(tmp_path / "tie", subs)
    entries = load_boards(root)[0].entries
    assert [e.rank for e in entries] == [1, 1]
    # The tie is broken by the CI lower bound: SemBridge's (0.86) beats DKD's (0.82).
    assert [e.id for e in entries] == ["sub-sembridge", "sub-dkd"]


def test_html_escapes_every_field(board: Path) -> None:
    html = (board / "site" / "index.html").read_text(encoding="utf-8")
    for raw in ("<img src=x", "<b>", "<svg", "<script>alert", "onerror=alert(1)>", "\"><svg"):
        assert raw not in html, raw
    assert escape_html(XSS_NAME) in html
    assert "DKD | &quot;decoupled&quot; &lt;b&gt;KD&lt;/b&gt;" in html
    assert "Ana &amp; Bo" in html
    # javascript: and http: URLs are shown as text, never as links.
    assert 'href="javascript' not in html and 'href="http://' not in html
    assert "javascript:alert(4)" in html and "http://insecure.example/p" in html
    # The only <a> elements are the submitters' https links.
    hrefs = re.findall(r'<a href="([^"]*)"', html)
    assert sorted(hrefs) == ["https://arxiv.org/abs/2501.00001", "https://example.org/dkd?a=1&amp;b=2",
                             "https://example.org/sb"]


def escape_html(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_html_loads_nothing_external(board: Path) -> None:
    html = (board / "site" / "index.html").read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    assert "default-src 'none'" in csp and "img-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    # src= only for the local plot; no stylesheets, fonts, imports or external scripts.
    assert re.findall(r'\bsrc="([^"]*)"', html) == ["ranking.svg"]
    for marker in ("<link", "@import", "url(", "<script src", "<iframe", "<object", "<embed"):
        assert marker not in html, marker
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    names = [re.sub(r'"[^"]*"', '""', t) for t in tags]  # attribute names only, values blanked
    assert not [t for t in names if re.search(r"\son[a-z]+\s*=", t)]  # no inline event handlers
    # Every http(s) URL in the page is inside a submitter link's href or is inert text.
    outside_links = re.sub(r'<a href="https://[^"]*"', "", html)
    assert re.findall(r"https?://\S+", outside_links) == ["http://insecure.example/p</span></td><td"]
    svg = (board / "site" / "ranking.svg").read_text(encoding="utf-8")
    assert "<script" not in svg and "<img" not in svg and "xlink:href=\"http" not in svg


def test_markdown_cells_are_escaped(board: Path) -> None:
    md = (board / "LEADERBOARD.md").read_text(encoding="utf-8")
    dkd = next(line for line in md.splitlines() if line.startswith("| 2 "))
    assert "DKD \\| \"decoupled\" &lt;b&gt;KD&lt;/b&gt;" in dkd
    assert "Ana &amp; Bo (Uni \\`Tick\\`)" in dkd
    assert "[code](https://example.org/dkd?a=1&b=2)" in dkd
    assert "paper: `http://insecure.example/p`" in dkd and "(http://" not in dkd  # a code span, not a link
    xss = next(line for line in md.splitlines() if line.startswith("| 3 "))
    assert "<" not in xss and ">" not in xss.replace("→", "")
    assert "code: `javascript:alert(4)`" in xss and "](javascript" not in xss
    for line in md.splitlines():
        if line.startswith("| "):  # every table row keeps its 10 cells: no unescaped '|' from data
            assert len(re.split(r"(?<!\\)\|", line)) == 12, line


def test_md_escape_and_safe_url() -> None:
    assert md_escape("a|b\nc <x> `y` [z](w) *e* _u_ &") == (
        "a\\|b c &lt;x&gt; \\`y\\` \\[z\\]\\(w\\) \\*e\\* \\_u\\_ &amp;")
    assert safe_url("https://example.org/a?b=c") == "https://example.org/a?b=c"
    for bad in ("http://example.org", "javascript:alert(1)", "https://x.org/\"onmouseover=1", "https://a b",
                "HTTPS://example.org", "https://x.org/<script>", "data:text/html,x", None, 3):
        assert safe_url(bad) is None, bad


def test_plot_changes_with_the_data(board: Path, tmp_path: Path) -> None:
    svg = (board / "site" / "ranking.svg").read_bytes()
    assert svg.startswith(b"<?xml") and b"<svg" in svg
    assert b"SemBridge" in svg
    subs = submissions()
    subs[0]["summary"]["oa_mean"] = 0.95
    changed = write_board(tmp_path / "changed", subs)
    render_board(changed)
    assert (changed / "site" / "ranking.svg").read_bytes() != svg
    assert load_boards(changed)[0].entries[0].id == "sub-dkd"


def test_dataset_without_submissions_gets_an_empty_table(tmp_path: Path) -> None:
    root = write_board(tmp_path / "b", submissions()[3:])
    render_board(root)
    md = (root / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert "_No submissions yet._" in md
    html = (root / "site" / "index.html").read_text(encoding="utf-8")
    assert "No submissions yet." in html
    assert json.loads((root / "datasets.json").read_text())[0]["name"] == EUROSAT["name"]


def test_render_refuses_a_folder_that_is_not_a_board(tmp_path: Path) -> None:
    from ackd_bench.leaderboard.submission import LeaderboardError

    (tmp_path / "empty").mkdir()
    (tmp_path / "only-submissions" / "submissions").mkdir(parents=True)
    for target in (tmp_path / "missing", tmp_path / "empty", tmp_path / "only-submissions"):
        with pytest.raises(LeaderboardError, match="is not a leaderboard board") as err:
            render_board(target)
        assert str(target) in str(err.value) and "ackd-bench leaderboard init --board" in str(err.value)
    assert not (tmp_path / "missing").exists() and not list((tmp_path / "empty").iterdir())
    assert [p.name for p in (tmp_path / "only-submissions").iterdir()] == ["submissions"]


CORRUPT = [  # (file under the board, its bytes, what the one-line error says)
    ("datasets.json", b"[{", "datasets.json: not valid JSON at line 1"),
    ("datasets.json", b'[{"name": "x"}]', "datasets.json is not an ackd-bench board datasets file"),
    ("submissions/sub-dkd.json", b"\xff", "sub-dkd.json: not UTF-8"),
    ("submissions/sub-dkd.json", b'{"id": "sub-dkd", "dataset": []}', "sub-dkd.json cannot be shown"),
    ("submissions/sub-dkd.json", b"[1, 2]", "sub-dkd.json: a submission must be a JSON object"),
    ("submissions/sub-dkd.json/", b"", "sub-dkd.json is not a submission"),  # a folder
    ("submissions/README.md", b"# notes", "README.md is not a submission"),
]


@pytest.mark.parametrize(("name", "data", "message"), CORRUPT)
def test_render_names_a_corrupt_board_file(name, data, message, board: Path) -> None:
    from click.testing import CliRunner

    from ackd_bench.benchmark.cli import main

    target = board / name.rstrip("/")
    if name.endswith("/"):
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(data)
    before = _read(board)
    res = CliRunner().invoke(main, ["leaderboard", "render", str(board)])
    assert res.exit_code == 1 and message in res.output and str(target) in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert _read(board) == before  # the page is left as it was
