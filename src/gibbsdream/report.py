"""A sweep's report folder: ``results.json``, two PNG plots and an ``index.html`` that reads offline.

The page links only to files in its own folder (relative paths, no scripts, no web fonts), so the
folder can be zipped, mailed or opened from a phone. One row per combination of the grid: its
settings, its figures, and the chains themselves (GIFs per problem, or the strings it dreamt).
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes, atomic_write_text
from .sampling.chain import FREE_ENERGY, LOG_PROBABILITY, TraceKind
from .sampling.diagnostics import RHAT_WARNING
from .summary import distinct_records

# What a family's trace holds, for cell records written before they carried "trace_kind" (only
# the two built-in families wrote such records).
FAMILY_TRACE_KINDS = {"rbm": FREE_ENERGY, "nade": LOG_PROBABILITY}
SCORES = {  # kind of outputs -> (row key, axis label, higher is better); the score is the final trace
    "strings": ("mean_final_energy", "mean final free energy (T = 1)", FREE_ENERGY.higher_is_better),
    "images": ("mean_final_log_prob", "mean log-probability of the last redraw", LOG_PROBABILITY.higher_is_better),
}
# What shades a row "best". For images it is not the final trace: that is the mean log-probability
# of the variables the last step redrew, under their conditionals, which a colder draw raises by
# construction (at T = 0 every variable takes its conditional's mode), so ranking by it named the
# coldest row best whatever the fills looked like. Where the hole hides a true image the fills that
# come closest to it are best (hole PSNR); blank canvases have no truth to compare with, and no best
# row. A string's free energy is the whole sample's (unnormalised) log-probability: the likeliest
# samples are best, as the string lists order them.
RANKINGS = {  # kind of outputs -> (row key, what it is; its direction comes from the trace for strings)
    "strings": ("mean_final_energy", "mean final free energy (T = 1)"),
    "images": ("hole_psnr_db", "hole PSNR in dB (how close the fills come to the true images)"),
}
DIVERSITY = {
    "strings": "diversity: share of unique samples",
    "images": "diversity: share of hole pixels where two completions differ",
}
TRACE_LABEL = {
    "strings": "mean free energy F(v) at T = 1",
    "images": "mean log-probability of the variables redrawn",
}
MAX_STRINGS = 25  # samples listed per string cell (the rest are counted)


def write_report(spec, cells: list[dict], out, command: str | None = None) -> dict:
    """Write ``results.json``, ``trace.png``, ``energy-diversity.png`` and ``index.html`` into ``out``.

    Args:
        spec: the :class:`gibbsdream.sweep.SweepSpec` that was run.
        cells: its cell records, in cell order (``load_cells``).
        command: the command line that made the sweep, shown on the page.

    Returns:
        the ``results.json`` content.
    """
    out = Path(out)
    results = {
        "checkpoint": spec.checkpoint,
        "family": spec.family,
        "grid": spec.grid,
        "seed": spec.seed,
        "problems": _problem_text(spec),
        "command": command,
        "rows": [cell["row"] for cell in cells],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _plot_traces(spec, cells, out / "trace.png")
    _plot_score_diversity(spec, cells, out / "energy-diversity.png")
    atomic_write_text(out / "index.html", _page(spec, cells, command))
    return results


def trace_kind(spec, cells: list[dict]) -> TraceKind:
    """What the cells' traces (and so their scores) hold: from the records, or by family for old ones."""
    for cell in cells:
        if "trace_kind" in cell:
            return TraceKind.from_json(cell["trace_kind"])
    return FAMILY_TRACE_KINDS[spec.family]


def ranking(spec, cells: list[dict]) -> tuple[str, str, bool] | None:
    """``(row key, what it is, higher is better)`` of the figure that picks the best rows
    (:data:`RANKINGS`), or None where nothing ranks them (image sweeps of blank canvases)."""
    if spec.outputs == "images" and spec.mask == "blank":
        return None
    key, title = RANKINGS[spec.outputs]
    return key, title, True if spec.outputs == "images" else trace_kind(spec, cells).higher_is_better


def _rank_value(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None and key == "hole_psnr_db" and key in row:
        return math.inf  # the sweep records no PSNR where the fills equal the truth: the closest there is
    if value is None or math.isnan(value):
        return None
    return value


def best_cells(spec, cells: list[dict]) -> list[dict]:
    """The cells with the best :func:`ranking` figure (several on a tie; none without a ranking)."""
    rank = ranking(spec, cells)
    if rank is None:
        return []
    key, _, higher_is_better = rank
    scored = [(value, c) for c in cells if (value := _rank_value(c["row"], key)) is not None]
    if not scored:
        return []
    best = (max if higher_is_better else min)(value for value, _ in scored)
    return [c for value, c in scored if value == best]


def _problem_text(spec) -> str:
    if spec.outputs == "strings":
        return f"{spec.chains} chains from the same starting states"
    if spec.mask == "blank":
        return f"{spec.problems} blank canvases x {spec.samples} chains each"
    source = spec.image or "held-out test images"
    return f"{spec.problems} problems ({source}, mask {spec.mask}) x {spec.samples} completions each"


# ---- plots ------------------------------------------------------------------------------------


def _figure():
    import matplotlib  # matplotlib is slow to import: only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())


def _colours(plt, count: int):
    cmap = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(count)]


def _plot_traces(spec, cells: list[dict], path: Path) -> None:
    """The mean trace over steps, one labelled line per combination."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    longest = max((len(c["mean_trace"]) for c in cells), default=0)
    # Image traces average a new random block each step and jump about; a running mean shows the trend.
    window = max(1, longest // 25) if spec.outputs == "images" else 1
    for cell, colour in zip(cells, _colours(plt, len(cells))):
        trace = np.array([np.nan if v is None else v for v in cell["mean_trace"]], dtype=float)
        steps = np.flatnonzero(~np.isnan(trace))
        values = trace[steps]
        if window > 1 and len(values) >= window:
            values = np.convolve(values, np.ones(window) / window, mode="valid")
            steps = steps[window - 1 :]
        ax.plot(steps, values, label=f"{cell['cell']}: {cell['label']}", color=colour, linewidth=1.3)
    if longest > 250:  # long chains: show the start too
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("step (symmetric log scale)")
    else:
        ax.set_xlabel("step")
    kind = trace_kind(spec, cells)
    label = f"{TRACE_LABEL[spec.outputs]} ({kind.direction})"
    ax.set_ylabel(label + (f"\n(running mean over {window} steps)" if window > 1 else ""))
    ax.set_title("Mean trace over steps, per combination")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


DPI = 110  # the plots' resolution; the figures are laid out at it, so labels are placed as saved
MARKER_SIZE = 36  # scatter marker area in points^2
# Where a point's label may go: offsets in points (right and up), nearest first, the upper right
# first of each ring (where a lone label has always sat).
LABEL_DIRECTIONS = ((1, 1), (1, 0), (0, 1), (1, -1), (-1, 1), (0, -1), (-1, 0), (-1, -1))
LABEL_RINGS = (5, 10, 16, 24, 34, 46)


def _plot_score_diversity(spec, cells: list[dict], path: Path) -> None:
    """Final energy (or log-probability) against diversity, one labelled point per combination."""
    plt = _figure()
    fig = score_diversity_figure(spec, cells)
    _save(fig, path)
    plt.close(fig)


def score_diversity_figure(spec, cells: list[dict]):
    """The matplotlib figure of :func:`_plot_score_diversity` (the caller closes it): every point
    labelled with its cell number, no two labels on top of each other."""
    plt = _figure()
    key, score_label, _ = SCORES[spec.outputs]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=DPI)
    points = []
    for cell, colour in zip(cells, _colours(plt, len(cells))):
        x, y = cell["row"].get("diversity"), cell["row"].get(key)
        if x is None or y is None:
            continue
        ax.scatter([x], [y], color=colour, s=MARKER_SIZE, label=f"{cell['cell']}: {cell['label']}")
        points.append((str(cell["cell"]), x, y))
    ax.set_xlabel(DIVERSITY[spec.outputs])
    ax.set_ylabel(score_label)
    ax.set_title("Final score against diversity, per combination")
    if not points:
        ax.text(
            0.5,
            0.5,
            "no diversity to show: one completion per problem (use --samples 2 or more)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
        )
    else:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()  # before the labels: they are placed where the axes finally are
    _place_labels(fig, ax, points)
    return fig


def _place_labels(fig, ax, points: list[tuple[str, float, float]]) -> None:
    """Annotate each ``(label, x, y)`` at the first offset of :data:`LABEL_RINGS` x
    :data:`LABEL_DIRECTIONS` where it overlaps no label placed before, no marker and nothing outside
    the axes; a label moved off the first ring gets a thin line to its point. Close points (two
    settings that end alike) otherwise print their numbers on top of each other."""
    renderer = fig.canvas.get_renderer()
    to_pixels = fig.dpi / 72
    radius = math.sqrt(MARKER_SIZE) / 2 * to_pixels  # a marker's half-width in pixels
    centres = [ax.transData.transform((x, y)) for _, x, y in points]
    taken = [(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]  # the markers
    inside = ax.get_window_extent(renderer)
    for text, x, y in points:
        label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 0), fontsize=7)
        best = None  # (overlap, ring, box, offset, alignment) of the least bad place, should none be free
        for ring, distance in enumerate(LABEL_RINGS):
            for dx, dy in LABEL_DIRECTIONS:
                alignment = ({1: "left", 0: "center", -1: "right"}[dx], {1: "bottom", 0: "center", -1: "top"}[dy])
                label.set_horizontalalignment(alignment[0])
                label.set_verticalalignment(alignment[1])
                label.xyann = (dx * distance, dy * distance)
                b = label.get_window_extent(renderer)
                box = (b.x0, b.y0, b.x1, b.y1)
                overlap = sum(_overlap(box, other) for other in taken)
                if b.x0 < inside.x0 or b.x1 > inside.x1 or b.y0 < inside.y0 or b.y1 > inside.y1:
                    overlap += b.width * b.height  # outside the axes counts as wholly covered
                if best is None or overlap < best[0]:
                    best = (overlap, ring, box, label.xyann, alignment)
                if overlap == 0:
                    break
            if best[0] == 0:
                break
        label.remove()  # the probe; the label is made again where it goes, with its line if it moved away
        _, ring, box, offset, (ha, va) = best
        line = {"arrowstyle": "-", "color": "0.5", "linewidth": 0.5, "shrinkA": 1, "shrinkB": 3}
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=offset,
            ha=ha,
            va=va,
            fontsize=7,
            arrowprops=line if ring > 0 else None,
        )
        taken.append(box)


def _overlap(a: tuple, b: tuple) -> float:
    """The area two ``(x0, y0, x1, y1)`` boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# ---- the page ---------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.35rem; margin: 0 0 .4rem; }
code { background: #f2f2f2; padding: 0 .25em; border-radius: 3px; word-break: break-word; }
.meta { color: #444; font-size: .92rem; }
.plots img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: .3rem 0; }
.table { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #d8d8d8; padding: .35rem .5rem; vertical-align: top; text-align: left; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { background: #fff8dc; }
figure { display: inline-block; margin: 0 .4rem .4rem 0; text-align: center; }
figure img { image-rendering: pixelated; max-width: 100%; height: auto; }
figcaption { font-size: .75rem; color: #555; }
ol.samples { margin: 0; padding-left: 1.6rem; font-family: ui-monospace, Menlo, Consolas, monospace; \
font-size: .85rem; }
ol.samples mark { background: #ffe066; }
.seen { color: #777; font-style: italic; }
@media (max-width: 600px) {  /* a phone: each row becomes a card, each cell a labelled line */
  body { margin: .5rem; }
  table, tbody, tr, td { display: block; }
  thead { display: none; }
  tr { border: 1px solid #ccc; border-radius: 6px; margin: 0 0 .8rem; padding: .3rem; }
  td { border: none; padding: .15rem .2rem; text-align: left; }
  td.num { text-align: left; }
  td::before { content: attr(data-label) ": "; font-weight: 600; color: #333; }
}
"""


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _page(spec, cells: list[dict], command: str | None) -> str:
    key = SCORES[spec.outputs][0]
    kind = trace_kind(spec, cells)
    varying = spec.varying
    fixed = {name: values[0] for name, values in spec.grid.items() if len(values) == 1}
    best = {c["cell"] for c in best_cells(spec, cells)}
    metrics = [(key, "final log p" if spec.outputs == "images" else "mean final energy")]
    if spec.outputs == "strings":
        metrics.append(("lowest_final_energy", "lowest energy"))
    if spec.outputs == "images":  # for strings diversity is the unique share, shown next
        metrics.append(("diversity", "diversity"))
    metrics += [("unique_share", "unique"), ("in_training_share", "in training data")]
    if spec.outputs == "strings" and any("yield" in c["row"] for c in cells):
        metrics += [("yield", "yield"), ("yield_per_1000_chain_sweeps", "yield / 1,000 chain-sweeps")]
    if spec.outputs == "images" and spec.mask != "blank":
        metrics.append(("hole_psnr_db", "hole PSNR (dB)"))
    metrics += [("rhat", "R-hat"), ("ess_bulk", "bulk ESS")]
    metrics.append(("seconds", "seconds"))
    head = (
        "".join(f"<th>{html.escape(n)}</th>" for n in ["#", *varying])
        + "".join(f"<th>{html.escape(title)}</th>" for _, title in metrics)
        + "<th>chains</th>"
    )
    body = []
    for cell in cells:
        row = cell["row"]
        is_best = cell["cell"] in best
        tds = [f'<td class=num data-label="#">{cell["cell"]}</td>']
        tds += [
            f'<td data-label="{html.escape(n)}"><code>{html.escape(_fmt(cell["settings"][n]))}</code></td>'
            for n in varying
        ]
        tds += [
            f'<td class=num data-label="{html.escape(title)}">{html.escape(_fmt(row.get(k)))}</td>'
            if not (k == "rhat" and (row.get(k) or 0) > RHAT_WARNING)
            else f'<td class="num warn" data-label="{html.escape(title)}" title="R-hat above {RHAT_WARNING}: the '
            f'chains have not mixed">{html.escape(_fmt(row[k]))} &#9888;</td>'
            for k, title in metrics
        ]
        tds.append(f'<td data-label="chains">{_chains_html(spec, cell, kind)}</td>')
        body.append(f"<tr{' class=best' if is_best else ''}>{''.join(tds)}</tr>")
    fixed_text = ", ".join(f"{n} = <code>{html.escape(_fmt(v))}</code>" for n, v in fixed.items()) or "none"
    command_html = f"<p class=meta>Made by <code>{html.escape(command)}</code></p>" if command else ""
    extreme = "highest" if kind.higher_is_better else "lowest"
    legend = (
        f"In each cell the sample with the {extreme} {kind.name} is highlighted; grey italics are strings already in "
        "the training data; ×n counts repeats. "
        if spec.outputs == "strings"
        else "Each GIF runs one problem's chains from the first fill (the hole in magenta) to the last step"
        + ("." if spec.mask == "blank" else ", beside the true image (the first picture).")
        + " "
    )
    rank = ranking(spec, cells)
    if rank is None:
        best_note = (
            "No row is shaded: blank canvases have no true image to compare the samples with (and the final log p "
            "rises as the temperature falls, whatever the samples look like)."
        )
    else:
        best_note = f"The shaded row has the {'highest' if rank[2] else 'lowest'} {html.escape(rank[1])}."
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gibbsdream sweep: {html.escape(Path(spec.checkpoint).name)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Sweep of <code>{html.escape(Path(spec.checkpoint).name)}</code> ({html.escape(spec.family)})</h1>
{command_html}
<p class=meta>{len(cells)} combinations; {html.escape(_problem_text(spec))}; seed {spec.seed} in every row.
Fixed settings: {fixed_text}. {best_note}
{legend}Figures: <a href="results.json">results.json</a>.</p>
<div class=plots>
<img src="trace.png" alt="mean trace over steps, one line per combination">
<img src="energy-diversity.png" alt="final score against diversity, one point per combination">
</div>
<div class=table><table>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table></div>
</body>
</html>
"""


def _chains_html(spec, cell: dict, kind: TraceKind) -> str:
    if spec.outputs == "images":
        figures = []
        for gif, name in zip(cell["gifs"], cell["problems"]):
            alt = f"problem {name}, {cell['label']}"
            figures.append(
                f'<figure><img src="{html.escape(gif)}" alt="{html.escape(alt)}" loading="lazy">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
        return "".join(figures)
    ranked = distinct_records(cell["samples"], kind.higher_is_better)  # best first, as `sample` lists them
    items = []
    for i, s in enumerate(ranked[:MAX_STRINGS]):
        text = html.escape(s["text"]).replace(" ", "&nbsp;") or "&nbsp;"
        text = f"<mark>{text}</mark>" if i == 0 else text
        extra = f" ×{s['count']}" if s["count"] > 1 else ""
        seen = " class=seen title='already in the training data'" if s["in_training_data"] else ""
        items.append(f"<li{seen}>{text} <small>{s['energy']:.2f}{extra}</small></li>")
    more = f"<small>… and {len(ranked) - MAX_STRINGS} more distinct</small>" if len(ranked) > MAX_STRINGS else ""
    return f"<ol class=samples>{''.join(items)}</ol>{more}"
