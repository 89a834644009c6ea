"""Dataset card: card.md with taxonomy, modalities, consistency, provenance, counts and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_COLOURS = {"train": "#1b9e77", "val": "#d95f02", "test": "#7570b3"}
TRUE_COLOUR_BANDS = ("B04", "B03", "B02")
EXAMPLES_PER_MODALITY = 3
MAX_QUERIES_SHOWN = 5
# Drop the matplotlib version from PNG metadata so identical plots give identical files.
PNG_METADATA = {"Software": None}


def write_card(
    out_dir: Path, manifest: dict[str, Any], samples: gpd.GeoDataFrame, arrays: dict[str, np.ndarray]
) -> None:
    """Write ``card.md`` and ``card/{class_balance,footprints,examples}.png`` into ``out_dir``.

    Matches the ``card`` callable of ``write_dataset``; it runs before the fingerprint exists,
    so the card points to ``dataset.json`` for it.

    Args:
        out_dir: The dataset (staging) directory.
        manifest: The dataset manifest (taxonomy, modalities, consistency, provenance, splits).
        samples: The sample table (the dataset format's columns).
        arrays: ``{modality: N x C x H x W}`` chips indexed by ``array_index``.
    """
    card_dir = Path(out_dir) / "card"
    card_dir.mkdir(parents=True, exist_ok=True)
    classes = [entry["name"] for entry in sorted(manifest["taxonomy"], key=lambda e: e["id"])]
    modalities = list(manifest["modalities"])
    counts = {
        m: {s: {c: int(((samples["modality"] == m) & (samples["split"] == s)
                        & (samples["label_name"] == c)).sum()) for c in classes} for s in SPLITS}
        for m in modalities
    }
    plot_class_balance(card_dir / "class_balance.png", manifest, counts, classes)
    plot_footprints(card_dir / "footprints.png", manifest, samples)
    plot_examples(card_dir / "examples.png", manifest, samples, arrays, classes)
    text = render_card_markdown(manifest, counts, classes, measure_overlap(samples))
    (Path(out_dir) / "card.md").write_text(text, encoding="utf-8")


def measure_overlap(samples: gpd.GeoDataFrame) -> dict[str, tuple[int, int]]:
    """Count chips of each modality whose footprint intersects a chip of the other modality.

    Returns:
        ``{"rgb": (co-located RGB chips, all RGB chips), "ms": (..., ...)}``.
    """
    from shapely import STRtree

    geometry = {m: samples.geometry[samples["modality"] == m].to_numpy() for m in ("ms", "rgb")}
    result = {}
    for mine, other in (("rgb", "ms"), ("ms", "rgb")):
        if len(geometry[mine]) == 0 or len(geometry[other]) == 0:
            result[mine] = (0, len(geometry[mine]))
            continue
        hits = STRtree(geometry[other]).query(geometry[mine], predicate="intersects")
        result[mine] = (len(np.unique(hits[0])), len(geometry[mine]))
    return result


def _figure(width: float, height: float) -> Any:
    # A bare Figure with its own Agg canvas: no pyplot, so no global backend state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_class_balance(
    path: Path, manifest: dict[str, Any], counts: dict[str, dict[str, dict[str, int]]], classes: list[str]
) -> None:
    """Grouped bars: chips per class, one bar per split, one panel per modality."""
    modalities = list(counts)
    figure = _figure(max(6.0, 0.9 * len(classes) + 2), 3.2 * len(modalities))
    axes = figure.subplots(len(modalities), 1, squeeze=False)[:, 0]
    x = np.arange(len(classes))
    width = 0.8 / len(SPLITS)
    for ax, modality in zip(axes, modalities):
        for i, split in enumerate(SPLITS):
            values = [counts[modality][split][c] for c in classes]
            bars = ax.bar(x + (i - 1) * width, values, width, label=split, color=SPLIT_COLOURS[split])
            ax.bar_label(bars, fontsize=7, padding=1)
        collection = manifest["modalities"][modality]["collection"]
        total = sum(sum(per_class.values()) for per_class in counts[modality].values())
        ax.set_title(f"{modality.upper()} ({collection}): chips per class and split, {total} in all")
        crowded = len(classes) > 5
        ax.set_xticks(x, classes, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_ylabel("chips")
        ax.margins(y=0.15)
        ax.legend(title="split", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, metadata=PNG_METADATA)


def _polygons(geometry: Any) -> list[np.ndarray]:
    parts = geometry.geoms if geometry.geom_type == "MultiPolygon" else [geometry]
    return [np.asarray(part.exterior.coords) for part in parts]


def plot_footprints(path: Path, manifest: dict[str, Any], samples: gpd.GeoDataFrame) -> None:
    """Chip footprints in lon/lat, one panel per modality (regions may be continents apart)."""
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    modalities = list(manifest["modalities"])
    figure = _figure(5.2 * len(modalities), 5.0)
    axes = figure.subplots(1, len(modalities), squeeze=False)[0]
    for ax, modality in zip(axes, modalities):
        rows = samples[samples["modality"] == modality]
        per_split = ", ".join(f"{s} {int((rows['split'] == s).sum())}" for s in SPLITS)
        ax.set_title(f"{modality.upper()} ({manifest['modalities'][modality]['collection']}): "
                     f"{len(rows)} chips\n{per_split}")
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        if rows.empty:
            ax.text(0.5, 0.5, "no chips", ha="center", va="center", transform=ax.transAxes)
            continue
        for split in SPLITS:
            part = rows[rows["split"] == split]
            if part.empty:
                continue
            polygons = [ring for geom in part.geometry for ring in _polygons(geom)]
            ax.add_collection(
                PolyCollection(polygons, facecolor=SPLIT_COLOURS[split], edgecolor="none", alpha=0.6)
            )
            # Chips are metres wide on a map of kilometres: centroid markers keep them visible.
            centres = part.geometry.representative_point()
            ax.scatter(centres.x, centres.y, s=10, color=SPLIT_COLOURS[split])
        minx, miny, maxx, maxy = rows.total_bounds
        pad = max(maxx - minx, maxy - miny, 0.01) * 0.08
        ax.set_xlim(minx - pad, maxx + pad)
        ax.set_ylim(miny - pad, maxy + pad)
        # Equal ground distance on both axes at this latitude.
        ax.set_aspect(1.0 / np.cos(np.radians((miny + maxy) / 2)), adjustable="box")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    handles = [Line2D([], [], marker="s", linestyle="none", color=SPLIT_COLOURS[s], label=s) for s in SPLITS]
    figure.legend(handles=handles, title="split", loc="outside lower center", ncols=len(SPLITS))
    figure.savefig(path, metadata=PNG_METADATA)


def _pick(rows: gpd.GeoDataFrame, k: int) -> list[int]:
    """Array indices of up to ``k`` chips spread evenly over the rows sorted by sample_id."""
    ordered = rows.sort_values("sample_id")["array_index"].to_numpy()
    if len(ordered) == 0:
        return []
    positions = np.unique(np.linspace(0, len(ordered) - 1, min(k, len(ordered))).round().astype(int))
    return [int(ordered[p]) for p in positions]


def _display_bands(manifest: dict[str, Any], modality: str) -> list[int]:
    bands = manifest["modalities"][modality]["bands"]
    if all(b in bands for b in TRUE_COLOUR_BANDS):
        return [bands.index(b) for b in TRUE_COLOUR_BANDS]
    if all(b in bands for b in ("R", "G", "B")):
        return [bands.index(b) for b in ("R", "G", "B")]
    return [0, 0, 0] if len(bands) < 3 else [0, 1, 2]


def _stretch(chips: np.ndarray) -> np.ndarray:
    """Map K x 3 x H x W chips to K x H x W x 3 floats in [0, 1] by the 2-98 percentile per band.

    One stretch for all shown chips of a modality, so brightness differences between classes
    stay visible (a per-chip stretch would make every class look alike).
    """
    values = chips.astype(np.float64)
    low = np.percentile(values, 2, axis=(0, 2, 3), keepdims=True)
    high = np.percentile(values, 98, axis=(0, 2, 3), keepdims=True)
    scaled = np.clip((values - low) / np.maximum(high - low, 1e-9), 0.0, 1.0)
    return scaled.transpose(0, 2, 3, 1)


def plot_examples(
    path: Path,
    manifest: dict[str, Any],
    samples: gpd.GeoDataFrame,
    arrays: dict[str, np.ndarray],
    classes: list[str],
) -> None:
    """Grid of example chips: one row per class, a few chips per modality (MS as B04-B03-B02)."""
    modalities = list(manifest["modalities"])
    k = EXAMPLES_PER_MODALITY
    figure = _figure(1.5 * k * len(modalities) + 1.2, 1.5 * len(classes) + 0.8)
    axes = figure.subplots(len(classes), k * len(modalities), squeeze=False)
    for j, modality in enumerate(modalities):
        rows = samples[samples["modality"] == modality]
        picks = {c: _pick(rows[rows["label_name"] == c], k) for c in classes}
        flat = sorted(i for c in classes for i in picks[c])
        images: dict[int, np.ndarray] = {}
        if flat:
            shown = np.asarray(arrays[modality][flat])[:, _display_bands(manifest, modality)]
            images = dict(zip(flat, _stretch(shown)))
        bands = [manifest["modalities"][modality]["bands"][b] for b in _display_bands(manifest, modality)]
        for r, name in enumerate(classes):
            for c in range(k):
                ax = axes[r, j * k + c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < len(picks[name]):
                    ax.imshow(images[picks[name][c]], interpolation="nearest")
                else:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
                if r == 0:
                    ax.set_title(f"{modality.upper()} {c + 1}\n({','.join(bands)})", fontsize=8)
                if j == 0 and c == 0:
                    ax.set_ylabel(name, fontsize=9)
    figure.suptitle("Example chips per class (2-98 % stretch per modality)")
    figure.savefig(path, metadata=PNG_METADATA)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, sort_keys=True, indent=2, default=str), "```"]


def _query_count(queries: list | dict) -> int:
    if isinstance(queries, list):
        return len(queries)
    return sum(_query_count(v) if isinstance(v, (list, dict)) else 1 for v in queries.values())


def _first_queries(queries: list | dict) -> list | dict:
    """The first few queries of a list, or of each list in a {group: [query, ...]} mapping."""
    if isinstance(queries, list):
        return queries[:MAX_QUERIES_SHOWN]
    return {k: v[:MAX_QUERIES_SHOWN] if isinstance(v, list) else v for k, v in queries.items()}


def render_card_markdown(
    manifest: dict[str, Any],
    counts: dict[str, dict[str, dict[str, int]]],
    classes: list[str],
    overlap: dict[str, tuple[int, int]],
) -> str:
    """Return the text of ``card.md``."""
    modalities = list(counts)
    lines = [
        f"# {manifest['name']} {manifest['version']}",
        "",
        f"Created by {manifest.get('created_by', 'ackd-bench')}, dataset format "
        f"v{manifest.get('schema_version', 1)}. The fingerprint that results cite is in "
        "`dataset.json`; it is computed from the data after this card is written.",
        "",
        "## Taxonomy",
        "",
        *_md_table(["id", "class", "source codes"],
                   [[e["id"], e["name"], ", ".join(map(str, e["source_codes"]))]
                    for e in sorted(manifest["taxonomy"], key=lambda e: e["id"])]),
        "",
        "## Modalities",
        "",
        *_md_table(["modality", "collection", "bands", "GSD (m)", "dtype", "scale", "offset",
                    "chip (px)", "labels"],
                   [[m, s["collection"], " ".join(s["bands"]), s["gsd"], s["dtype"], s["scale"], s["offset"],
                     s["chip_px"], s["label_type"]] for m, s in manifest["modalities"].items()]),
        "",
        "## Semantic consistency",
        "",
        f"- mode: `{manifest['consistency']['mode']}`",
        f"- overlap stated in the manifest: {manifest['consistency']['overlap']}",
    ]
    consistency = manifest["consistency"]
    if "pairs" in consistency:
        lines.append(f"- co-located pairs (`pair_id`): {consistency['pairs']} of {consistency['pairs_wanted']} asked for")
    if "days_apart" in consistency:
        lines.append(f"- days between the two scenes of a pair: median {consistency['days_apart']['median']}, "
                     f"max {consistency['days_apart']['max']}")
    for modality, (hit, total) in overlap.items():
        share = f"{100 * hit / total:.1f} %" if total else "n/a"
        other = "MS" if modality == "rgb" else "RGB"
        lines.append(f"- measured: {hit} of {total} {modality.upper()} chips ({share}) intersect "
                     f"the footprint of at least one {other} chip")
    header = ["class"] + [f"{m}/{s}" for m in modalities for s in (*SPLITS, "all")]
    rows = []
    for name in [*classes, "total"]:
        row: list[Any] = [name if name != "total" else "**total**"]
        for m in modalities:
            per_split = [
                sum(counts[m][s].values()) if name == "total" else counts[m][s][name] for s in SPLITS
            ]
            row += [*per_split, sum(per_split)]
        rows.append(row)
    lines += ["", "## Splits", "", *_json_block(manifest["splits"]), "",
              "## Counts", "", *_md_table(header, rows), "",
              "![Class balance per modality and split](card/class_balance.png)", "",
              "## Chip locations", "", "![Chip footprints coloured by split](card/footprints.png)", "",
              "## Example chips", "", "![Example chips per class](card/examples.png)", "",
              "## Provenance", ""]
    for key, value in sorted(manifest["provenance"].items()):
        if key == "queries" and isinstance(value, (list, dict)):
            lines += [f"- queries ({_query_count(value)} in all, the first {MAX_QUERIES_SHOWN} of "
                      "each group below; every one is in `dataset.json`):", "",
                      *_json_block(_first_queries(value)), ""]
        elif isinstance(value, (dict, list)):
            lines += [f"- {key}:", "", *_json_block(value), ""]
        else:
            lines.append(f"- {key}: {value}")
    return "\n".join(lines).rstrip() + "\n"
