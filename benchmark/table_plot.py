"""Bar plot of an aggregated results table: one panel per dataset, bars per method, bootstrap-CI error bars."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.files import atomic_write_bytes
from ackd_bench.benchmark.table import CI_LEVEL, TEACHER_ROW, metric_heading, method_sort_key, table_blocks

GROUP_WIDTH = 0.8  # share of a pair's slot on the x axis that its bars fill


def draw_bar_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the bar plot PNG of ``rows`` (from ``aggregate``) to ``path`` atomically; returns ``path``.

    Each method keeps one colour across panels; the teacher, where known, is a dashed line across
    its pair's group. The y axis is zoomed to the data (it does not start at 0) so that gaps of a
    point or two stay visible; the tick labels show where it starts.

    Raises:
        ValueError: no rows to plot.
    """
    # The object-oriented API with the Agg canvas leaves pyplot's global state and backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    blocks = table_blocks(rows)
    if not blocks:
        raise ValueError("no results to plot")
    methods = sorted({(r["method"], r["kind"]) for r in rows if r["kind"] != "teacher"},
                     key=lambda m: method_sort_key(*m))
    colours = _colours(len(methods))
    colour_of = {m[0]: colours[i] for i, m in enumerate(methods)}

    widest = max(len(b["pairs"]) * max(1, sum(k != "teacher" for _, k in b["methods"])) for b in blocks)
    fig = Figure(figsize=(max(7.0, 2.5 + 0.45 * widest), 1.2 + 3.6 * len(blocks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(blocks), 1, squeeze=False)[:, 0]
    has_teacher = False
    for ax, block in zip(axes, blocks):
        has_teacher |= _draw_block(ax, block, colour_of, metric_heading(rows))

    handles = [Patch(facecolor=colour_of[m], label=m) for m, _ in methods]
    if has_teacher:
        handles.append(Line2D([], [], color="black", linestyle="--", label=TEACHER_ROW))
    handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.2, label="best per pair"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    fig.suptitle(f"Student {metric_heading(rows)} by method\n"
                 f"mean over seeds; error bars: {CI_LEVEL:.0%} bootstrap CI of the mean")
    buf = io.BytesIO()
    # No "Software" stamp, so that equal inputs give byte-identical files across matplotlib versions.
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _draw_block(ax: Any, block: dict[str, Any], colour_of: dict[str, Any], ylabel: str) -> bool:
    """Draw one dataset's grouped bars on ``ax``; returns whether a teacher line was drawn."""
    students = [(m, k) for m, k in block["methods"] if k != "teacher"]
    width = GROUP_WIDTH / max(1, len(students))
    lows, highs, drew_teacher = [], [], False
    for g, pair in enumerate(block["pairs"]):
        for j, (method, kind) in enumerate(students):
            cell = block["cells"].get((method, kind, pair))
            if cell is None:
                continue
            r, best = cell
            x = g + (j - (len(students) - 1) / 2) * width
            ax.bar(x, r["mean"], width * 0.92, color=colour_of[method],
                   edgecolor="black" if best else "none", linewidth=1.2,
                   yerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]],
                   capsize=3, error_kw={"elinewidth": 1, "ecolor": "0.2"})
            ax.annotate(f"{r['mean']:.1f}", (x, r["ci_high"]), xytext=(0, 4), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, rotation=90)
            lows.append(r["ci_low"])
            highs.append(r["ci_high"])
        teacher = block["cells"].get((TEACHER_ROW, "teacher", pair))
        if teacher is not None:
            mean = teacher[0]["mean"]
            ax.hlines(mean, g - GROUP_WIDTH / 2, g + GROUP_WIDTH / 2, colors="black", linestyles="--", linewidth=1.2)
            lows.append(mean)
            highs.append(mean)
            drew_teacher = True
    if lows:
        # Round the floor down to a multiple of 5 below the lowest CI; leave headroom for the labels.
        bottom = max(0.0, 5 * math.floor((min(lows) - 2) / 5))
        top = max(highs)
        ax.set_ylim(bottom, top + 0.18 * (top - bottom) + 1)
    ax.set_xticks(range(len(block["pairs"])), [f"{t}→{s}" for t, s in block["pairs"]],
                  rotation=12 if len(block["pairs"]) > 3 else 0)
    ax.set_xlim(-0.6, len(block["pairs"]) - 0.4)
    ax.set_xlabel("teacher (MS) → student (RGB)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{block['dataset']} (version {block['version']}, fingerprint {block['fingerprint'][:12]})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return drew_teacher


def _colours(n: int) -> list[Any]:
    """``n`` distinct colours: tab10 while it lasts, then tab20."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
