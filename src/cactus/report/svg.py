"""The report's charts as inline SVG, drawn here by hand: no plotting library, no script, nothing fetched when the page
is viewed. Each function returns one well-formed <svg> element (it parses as XML) sized in pixels; every text that
comes from the data is escaped here, and a long entity text is shortened with its whole text in a <title> tooltip.

- `threshold_curve`: mean scores over the subsets against the threshold, with the model's and the best threshold.
- `heatmap`: one subset's (n, n) cosine similarities, or without them its co-assignment, entities in the order given
  (by predicted cluster), predicted clusters boxed in black and gold clusters outlined in orange.
- `dendrogram`: one subset's average-link tree with the cut drawn across it.
"""

from __future__ import annotations

import html
import math

import numpy as np
from scipy.cluster.hierarchy import dendrogram as tree_layout

# Categorical colours of gold labels (cycled when a subset has more); none is the gold outline's orange.
PALETTE = ("#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#1f78b4", "#b15928", "#6a3d9a", "#33a02c",
           "#fb9a99", "#cab2d6", "#b2df8a", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f")
GOLD_OUTLINE = "#e66100"
PREDICTED_BOX = "#111111"
TOGETHER_RIGHT, TOGETHER_WRONG = "#4a78b5", "#d7301f"  # co-assignment: put together, of one gold cluster or not
_BLUES = ((0.0, (255, 255, 255)), (0.5, (158, 202, 225)), (1.0, (8, 48, 107)))  # similarity 1 is darkest
_SHADES = 48  # heatmap colours: cells of one shade share one <path>, which keeps the page small
_LABEL_CHARS = 34
_LEGEND_WIDTH = 440
_HALO = ' stroke="#fff" stroke-width="3" paint-order="stroke"'  # a label stays legible over the lines it crosses


def escape(text) -> str:
    """Text for SVG or HTML, with &, <, >, and both quotes escaped."""
    return html.escape(str(text), quote=True)


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, cut with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _n(x: float) -> str:
    """A coordinate, short: one decimal, no trailing zero."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (f'<svg width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" role="img" '
            f'aria-label="{escape(label)}" font-family="system-ui, sans-serif" font-size="11">'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Round tick values covering [low, high], at most about `most` of them."""
    span = max(high - low, 1e-9)
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0) if span / s <= most)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 6) for i in range(int((high - first) / step + 1e-9) + 1)]


def colour_of(code: int) -> str:
    """The colour of gold label number `code` (labels numbered by first appearance)."""
    return PALETTE[code % len(PALETTE)]


def _blue(value: float) -> str:
    """Sequential colour of a similarity: white at 0 (and below), dark blue at 1."""
    v = min(max(value, 0.0), 1.0)
    for (lo, c_lo), (hi, c_hi) in zip(_BLUES, _BLUES[1:]):
        if v <= hi:
            w = (v - lo) / (hi - lo)
            return "#" + "".join(f"{round(a + (b - a) * w):02x}" for a, b in zip(c_lo, c_hi))
    return "#08306b"


# ---- threshold curve ---------------------------------------------------------------------------------------------
def _x_range(thresholds: np.ndarray, lines: list[np.ndarray], marks: list[float]) -> tuple[float, float]:
    """The thresholds where some curve changes (every subset merged below, every entity alone above), padded, and
    every mark."""
    moving = np.zeros(len(thresholds), dtype=bool)
    for values in lines:
        moving |= (np.abs(values - values[0]) > 1e-9) & (np.abs(values - values[-1]) > 1e-9)
    idx = np.flatnonzero(moving)
    low, high = (thresholds[idx[0]] - 0.05, thresholds[idx[-1]] + 0.05) if len(idx) else (thresholds[0],
                                                                                          thresholds[-1])
    low, high = min([low, *marks]) - 0.02, max([high, *marks]) + 0.02
    return max(low, float(thresholds[0])), min(high, float(thresholds[-1]))


def threshold_curve(curve: dict, width: int = 660, height: int = 320) -> str:
    """Mean scores against the threshold.

    Args:
        curve: {"thresholds": (G,), "lines": [{"name", "values": (G,)}], "best_threshold", "model_threshold" (or
            None), "reference": None or {"label", "value"} (a score drawn across, e.g. an adaptive cut's)}.
    """
    t = np.asarray(curve["thresholds"], dtype=float)
    lines = [np.asarray(line["values"], dtype=float) for line in curve["lines"]]
    marks = [m for m in (curve["best_threshold"], curve["model_threshold"]) if m is not None]
    x0, x1 = _x_range(t, lines, marks)
    keep = (t >= x0 - 1e-9) & (t <= x1 + 1e-9)
    ref = curve.get("reference")
    shown = np.concatenate([v[keep] for v in lines] + ([[ref["value"]]] if ref else []))
    y0, y1 = min(0.0, math.floor(shown.min() * 10) / 10), 1.0
    left, right, top, bottom = 44, 110, 14, 40
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>']
    for x in _ticks(x0, x1, 10):
        body.append(f'<line x1="{_n(px(x))}" x2="{_n(px(x))}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
                    + _text(px(x), top + ph + 14, f"{x:g}", "middle"))
    for y in _ticks(y0, y1, 6):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(py(y))}" y2="{_n(py(y))}" stroke="#eee"/>'
                    + _text(left - 6, py(y) + 4, f"{y:g}", "end"))
    body.append(_text(left + pw / 2, height - 6, "threshold (clusters merge while their average similarity is at "
                                                 "least this)", "middle"))
    colours = ("#1f4e9c", "#e08214", "#5aae61", "#8073ac")
    for k, (line, values) in enumerate(zip(curve["lines"], lines)):
        points = " ".join(f"{_n(px(x))},{_n(py(y))}" for x, y in zip(t[keep], values[keep]))
        colour = colours[k % len(colours)]
        body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 28}" y1="{top + 10 + 16 * k}" '
                    f'y2="{top + 10 + 16 * k}" stroke="{colour}" stroke-width="2"/>'
                    + _text(left + pw + 32, top + 14 + 16 * k, line["name"]))
    if ref:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(py(ref["value"]))}" y2="{_n(py(ref["value"]))}" '
                    f'stroke="#555" stroke-dasharray="2 3"><title>{escape(ref["label"])}</title></line>'
                    + _text(left + 6, py(ref["value"]) - 5, ref["label"], extra=' fill="#555"' + _HALO))
    model, best = curve["model_threshold"], curve["best_threshold"]
    model_left = model is not None and model <= best  # each label on its own side of the pair: they never overlap
    for value, label, style, left_side in ((model, "model", ' stroke-dasharray="6 4"', model_left),
                                           (best, "best here", "", model is not None and not model_left)):
        if value is not None:
            body.append(f'<line x1="{_n(px(value))}" x2="{_n(px(value))}" y1="{top}" y2="{top + ph}" '
                        f'stroke="#222" stroke-width="1.5"{style}/>'
                        + _text(px(value) + (-4 if left_side else 4), top + 12, f"{label} {value:.2f}",
                                "end" if left_side else "start", ' fill="#222"' + _HALO))
    return _svg(width, height, "mean scores against the threshold", body)


# ---- heatmap -----------------------------------------------------------------------------------------------------
def _runs(codes: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of equal consecutive values."""
    starts = [0] + [i for i in range(1, len(codes)) if codes[i] != codes[i - 1]]
    return list(zip(starts, starts[1:] + [len(codes)]))


def _cells(view: dict) -> dict[str, list[str]]:
    """colour -> path commands of the cells of that colour, in cell units."""
    m = len(view["texts"])
    by_colour: dict[str, list[str]] = {}
    if view["values"] is not None:
        values = np.asarray(view["values"], dtype=float)
        shade = np.rint(np.clip(values, 0.0, 1.0) * (_SHADES - 1)).astype(int)
        colours = [_blue(s / (_SHADES - 1)) for s in range(_SHADES)]
        for i in range(m):
            for j in range(m):
                if shade[i, j] > 0:
                    by_colour.setdefault(colours[shade[i, j]], []).append(f"M{j} {i}h1v1h-1z")
        return by_colour
    pred, gold = view["pred_codes"], view["gold_codes"]
    for i in range(m):
        for j in range(m):
            if pred[i] == pred[j]:
                colour = TOGETHER_RIGHT if gold[i] == gold[j] else TOGETHER_WRONG
                by_colour.setdefault(colour, []).append(f"M{j} {i}h1v1h-1z")
    return by_colour


def _row_label(i: int, y: float, cell: float, view: dict) -> str:
    entity = view["entities"][i]
    tip = (f"entity {entity}: {view['texts'][i]}\ngold {view['gold'][i]!r}, predicted cluster {view['pred'][i]}")
    size = min(11.0, cell - 0.5)
    return (f'<g><title>{escape(tip)}</title>'
            + _text(22, y + cell * 0.78, shorten(view["pred"][i], 4), "end", f' font-size="{_n(size)}" fill="#666"')
            + f'<rect x="26" y="{_n(y + 0.5)}" width="8" height="{_n(cell - 1)}" '
              f'fill="{colour_of(view["gold_codes"][i])}"/>'
            + _text(38, y + cell * 0.78, shorten(view["texts"][i], _LABEL_CHARS), extra=f' font-size="{_n(size)}"')
            + "</g>")


def heatmap(view: dict, size: int = 440) -> str:
    """One subset's matrix, entities in the given order (grouped by predicted cluster).

    Args:
        view: {"texts": (m,) in drawing order, "entities": (m,) their indices in the subset, "gold": (m,) gold labels
            as text, "gold_codes": (m,) gold label numbers, "pred": (m,) predicted cluster ids as text,
            "pred_codes": (m,) their numbers, "values": (m, m) cosine similarities, or None for the co-assignment
            view (cells of entities predicted together: blue when they share a gold cluster, red otherwise)}.
        size: the matrix's side in pixels, about (a cell is 8 to 18 pixels).
    """
    m = len(view["texts"])
    cell = min(18.0, max(8.0, size / m))
    left, top, side = 250.0, 22.0, cell * m
    body = [f'<rect x="{left}" y="{top}" width="{_n(side)}" height="{_n(side)}" fill="#fff" stroke="#ccc"/>',
            f'<g transform="translate({_n(left)} {_n(top)}) scale({cell:.3f})" '
            'shape-rendering="crispEdges">']
    body += [f'<path fill="{colour}" d="{"".join(cmds)}"/>' for colour, cmds in sorted(_cells(view).items())]
    body.append("</g>")
    for i in range(m):
        body.append(_row_label(i, top + i * cell, cell, view))
        body.append(f'<rect x="{_n(left + i * cell + 0.5)}" y="{_n(top - 10)}" width="{_n(cell - 1)}" height="7" '
                    f'fill="{colour_of(view["gold_codes"][i])}"/>')
    for start, end in _runs(view["pred_codes"]):
        body.append(f'<rect x="{_n(left + start * cell)}" y="{_n(top + start * cell)}" '
                    f'width="{_n((end - start) * cell)}" height="{_n((end - start) * cell)}" fill="none" '
                    f'stroke="{PREDICTED_BOX}" stroke-width="1.5"/>')
    for start, end in _runs(view["gold_codes"]):
        inset = 2.0 if (end - start) * cell > 6 else 0.5
        body.append(f'<rect x="{_n(left + start * cell + inset)}" y="{_n(top + start * cell + inset)}" '
                    f'width="{_n((end - start) * cell - 2 * inset)}" height="{_n((end - start) * cell - 2 * inset)}"'
                    f' fill="none" stroke="{GOLD_OUTLINE}" stroke-width="2"/>')
    body.append(_legend(view["values"] is not None, 26, top + side + 16))
    what = "cosine similarities" if view["values"] is not None else "co-assignment"
    return _svg(max(left + side + 12, 26 + _LEGEND_WIDTH), top + side + 34, f"{what} of one subset", body)


def _legend(similarity: bool, x: float, y: float) -> str:
    """The colour key under a heatmap."""
    if similarity:
        parts = [f'<rect x="{_n(x + 8 * k)}" y="{_n(y)}" width="8" height="10" fill="{_blue(k / 10)}" '
                 'stroke="#ccc" stroke-width="0.5"/>' for k in range(11)]
        parts.append(_text(x + 92, y + 9, "cosine similarity 0 to 1;"))
        x += 232
    else:
        parts = [f'<rect x="{_n(x)}" y="{_n(y)}" width="10" height="10" fill="{TOGETHER_RIGHT}"/>',
                 _text(x + 14, y + 9, "together, rightly"),
                 f'<rect x="{_n(x + 118)}" y="{_n(y)}" width="10" height="10" fill="{TOGETHER_WRONG}"/>',
                 _text(x + 132, y + 9, "together, wrongly;")]
        x += 246
    parts += [f'<rect x="{_n(x)}" y="{_n(y)}" width="10" height="10" fill="none" stroke="{PREDICTED_BOX}"/>',
              _text(x + 14, y + 9, "predicted"),
              f'<rect x="{_n(x + 74)}" y="{_n(y)}" width="10" height="10" fill="none" stroke="{GOLD_OUTLINE}" '
              'stroke-width="2"/>', _text(x + 88, y + 9, "gold")]
    return "".join(parts)


# ---- dendrogram --------------------------------------------------------------------------------------------------
def dendrogram(tree: dict, width: int = 430, height: int = 260) -> str:
    """One subset's average-link tree (similarity upwards from 1 at the leaves) and the cut across it.

    Args:
        tree: {"linkage": (n - 1, 4) scipy linkage on distance 1 - similarity (entities by index), "texts": (n,),
            "gold": (n,) gold labels as text, "gold_codes": (n,), "pred": (n,) predicted ids as text,
            "cut": the similarity the cut lies at, "cut_label", "threshold": the model's threshold or None,
            "max_leaves": leaves drawn at most (deeper merges are folded into their subtree)}.
    """
    z = np.asarray(tree["linkage"], dtype=float)
    n = len(z) + 1
    truncate = {"truncate_mode": "lastp", "p": tree["max_leaves"]} if n > tree["max_leaves"] else {}
    layout = tree_layout(z, no_plot=True, **truncate)
    leaves = layout["leaves"]
    marks = [v for v in (tree["cut"], tree["threshold"]) if v is not None]
    low = min([1.0 - z[:, 2].max(), *marks])
    y0 = math.floor((low - 0.05) * 20) / 20
    left, right, top, bottom = 44, 10, 16, 22
    pw, ph = width - left - right, height - top - bottom

    def px(u: float) -> float:  # scipy places leaf k at 10 k + 5
        return left + u / (10 * len(leaves)) * pw

    def py(sim: float) -> float:  # the leaves (similarity 1) at the bottom, the last merge at the top
        return top + (sim - y0) / (1.0 - y0) * ph

    body = []
    for y in _ticks(y0, 1.0, 5):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(py(y))}" y2="{_n(py(y))}" stroke="#eee"/>'
                    + _text(left - 5, py(y) + 4, f"{y:g}", "end"))
    paths = [f"M{_n(px(xs[0]))} {_n(py(1 - ds[0]))}" + "".join(f"L{_n(px(x))} {_n(py(1 - d))}"
                                                              for x, d in zip(xs[1:], ds[1:]))
             for xs, ds in zip(layout["icoord"], layout["dcoord"])]
    body.append(f'<path d="{"".join(paths)}" fill="none" stroke="#333" stroke-width="1"/>')
    leaf_w = pw / len(leaves)
    for k, leaf in enumerate(leaves):
        x = px(10 * k + 5) - min(leaf_w - 1, 8) / 2
        if leaf < n:
            tip, fill = (f"entity {leaf}: {tree['texts'][leaf]}\ngold {tree['gold'][leaf]!r}, predicted cluster "
                         f"{tree['pred'][leaf]}"), colour_of(tree["gold_codes"][leaf])
        else:
            tip, fill = f"{int(z[leaf - n, 3])} entities merged below this point", "#999"
        body.append(f'<rect x="{_n(x)}" y="{_n(top + ph + 3)}" width="{_n(min(leaf_w - 1, 8))}" height="8" '
                    f'fill="{fill}"><title>{escape(tip)}</title></rect>')
    if tree["threshold"] is not None and abs(tree["threshold"] - tree["cut"]) > 1e-9:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(py(tree["threshold"]))}" '
                    f'y2="{_n(py(tree["threshold"]))}" stroke="#777" stroke-dasharray="5 4"/>'
                    + _text(left + 4, py(tree["threshold"]) - 4, f"model threshold {tree['threshold']:.2f}",
                            extra=' fill="#777"' + _HALO))
    body.append(f'<line x1="{left}" x2="{left + pw}" y1="{_n(py(tree["cut"]))}" y2="{_n(py(tree["cut"]))}" '
                f'stroke="{TOGETHER_WRONG}" stroke-width="1.5"/>'
                + _text(left + pw - 4, py(tree["cut"]) - 4, tree["cut_label"], "end",
                        f' fill="{TOGETHER_WRONG}"{_HALO}'))
    body.append(_text(12, top + ph / 2, "similarity", "middle", f' transform="rotate(-90 12 {_n(top + ph / 2)})"'))
    return _svg(width, height, "average-link dendrogram of one subset", body)
