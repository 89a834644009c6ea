"""The leaderboard's static page: one self-contained HTML file, sortable and filterable, with no external loads.

Every submitted field is HTML-escaped (in text and attributes); only plain https:// URLs become
links. The inline CSS and JS are allowed by their sha256 in a Content-Security-Policy meta tag
that forbids everything else (no network, no other scripts, no inline event handlers), so even a
field that slipped through escaping could not load or run anything.

Sorting: a header click sorts that table by the column; numbers start best first (OA, CI,
macro-F1 descending; rank ascending), text A→Z, and a second click reverses. The 95 % CI column
sorts by the interval's lower bound (a missing CI sorts last). Ties keep the leaderboard order
(rank, then submission id), so every order is well defined.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from ackd_bench.leaderboard.render import Board, Entry, ci_text, drift_notes, oa_text, pct, safe_url

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
td:last-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th button { font: inherit; font-weight: bold; background: none; border: none; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
tbody tr:hover { background: #f4f7fb; }
#filter { font: inherit; padding: 0.3rem 0.5rem; width: 20rem; max-width: 100%; }
img.plot { max-width: 100%; margin-top: 2rem; }
.note { color: #666; }
"""

JS = """
(function () {
  "use strict";
  function sortKey(row, col, numeric) {
    var raw = row.cells[col].getAttribute("data-sort");
    if (!numeric) { return raw; }
    var x = raw === "" ? NaN : parseFloat(raw);
    return isNaN(x) ? null : x;
  }
  function sortTable(table, col) {
    var th = table.tHead.rows[0].cells[col];
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort");
    dir = dir ? (dir === "ascending" ? "descending" : "ascending") : th.getAttribute("data-first");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ka = sortKey(a, col, numeric), kb = sortKey(b, col, numeric);
      if (ka !== kb) {
        if (ka === null) { return 1; }  /* missing values last in either direction */
        if (kb === null) { return -1; }
        var c = numeric ? ka - kb : ka.localeCompare(kb);
        if (c !== 0) { return sign * c; }
      }
      return parseInt(a.getAttribute("data-order"), 10) - parseInt(b.getAttribute("data-order"), 10);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.querySelector("button").addEventListener("click", function () { sortTable(table, col); });
    });
  });
  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  function applyFilter() {
    var q = filter.value.trim().toLowerCase();
    var n = 0;
    Array.prototype.forEach.call(document.querySelectorAll("table.board tbody tr"), function (r) {
      r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      if (!r.hidden) { n += 1; }
    });
    shown.textContent = String(n);
  }
  filter.addEventListener("input", applyFilter);
  applyFilter();
})();
"""

# (heading, data-type, first click direction)
COLUMNS = [
    ("Rank", "num", "ascending"), ("Method", "text", "ascending"), ("Teacher → Student", "text", "ascending"),
    ("OA (%)", "num", "descending"), ("95 % CI", "num", "descending"), ("Macro-F1 (%)", "num", "descending"),
    ("Seeds", "num", "descending"), ("Submitter", "text", "ascending"), ("Links", "text", "ascending"),
    ("Date", "text", "descending"),
]


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy() -> str:
    """The page's CSP: nothing from the network, only this file's own inline CSS/JS and its plot."""
    return (f"default-src 'none'; img-src 'self'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; "
            "base-uri 'none'; form-action 'none'")


def _sortnum(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _td(text: str, sort: str, numeric: bool = False, html: str | None = None) -> str:
    cls = ' class="num"' if numeric else ""
    return f'<td{cls} data-sort="{escape(sort)}">{escape(text) if html is None else html}</td>'


def _link(label: str, url: str) -> str:
    ok = safe_url(url)
    if ok is None:
        return f'<span class="inert">{escape(label)}: {escape(url)}</span>'
    return f'<a href="{escape(ok)}" rel="noopener noreferrer nofollow">{escape(label)}</a>'


def _row(e: Entry, order: int) -> str:
    pair = f"{e.teacher} → {e.student}"
    who = e.submitter + (f" ({e.affiliation})" if e.affiliation else "")
    links = [(k, u) for k, u in (("code", e.code_url), ("paper", e.paper_url)) if u]
    cells = [
        _td(str(e.rank), str(e.rank), numeric=True),
        _td(e.method, e.method.lower()),
        _td(pair, pair.lower()),
        _td(oa_text(e), _sortnum(e.oa_mean), numeric=True),
        _td(ci_text(e), _sortnum(e.ci_low), numeric=True),
        _td(pct(e.macro_f1), _sortnum(e.macro_f1), numeric=True),
        _td(", ".join(e.seeds), str(len(e.seeds)), numeric=True),
        _td(who, who.lower()),
        _td("", " ".join(k for k, _ in links), html=" ".join(_link(k, u) for k, u in links)),
        _td(e.date, e.date),
    ]
    return f'<tr data-order="{order}" data-id="{escape(e.id)}">' + "".join(cells) + "</tr>"


def _table(b: Board, index: int) -> list[str]:
    out = [f'<section id="dataset-{index}">', f"<h2>{escape(b.title)}</h2>"]
    if not b.known:
        out.append('<p class="note">Dataset not listed in datasets.json.</p>')
    if not b.entries:
        return out + ['<p class="note">No submissions yet.</p>', "</section>"]
    heads = "".join(f'<th scope="col" data-type="{t}" data-first="{d}"><button type="button">{escape(h)}</button></th>'
                    for h, t, d in COLUMNS)
    out += ['<table class="board">', f"<thead><tr>{heads}</tr></thead>", "<tbody>"]
    out += [_row(e, i) for i, e in enumerate(b.entries)]
    notes = [f'<p class="note">{escape(line)}</p>' for line in drift_notes(b) if line]
    return out + ["</tbody>", "</table>", *notes, "</section>"]


def render_html(boards: list[Board], *, plot: str) -> str:
    """The whole page for ``boards``; ``plot`` is the plot's file name beside index.html."""
    total = sum(len(b.entries) for b in boards)
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(content_security_policy(), quote=False)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ackd-bench leaderboard</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        "<h1>ackd-bench leaderboard</h1>",
        ('<p class="note">Test overall accuracy (OA, %) as mean ± std over seeds with the 95 % CI of the mean, '
        "ranked by mean OA. Click a column header to sort (again to reverse; the CI column sorts by its "
        "lower bound); type to filter rows.</p>"),
        ('<p><label for="filter">Filter: </label><input id="filter" type="search" autocomplete="off" '
        f'placeholder="method, architecture, submitter…"> <span id="shown">{total}</span> of {total} rows</p>'),
    ]
    for i, b in enumerate(boards):
        out += _table(b, i)
    out += [f'<img class="plot" src="{escape(plot)}" alt="Mean test OA with 95 % CI per submission">',
            f"<script>{JS}</script>", "</body>", "</html>", ""]
    return "\n".join(out)
