"""`cactus report`: one self-contained HTML page on how a model, or a predictions file, clusters labelled subsets.

`data.py` computes the content as plain dicts, `errors.py` puts each subset's split and merge errors in words,
`svg.py` draws the charts, and `templates/report.html.j2` lays out the page (jinja2, autoescaped). The page holds
no script and fetches nothing when it is viewed.
"""

from __future__ import annotations

import os
from typing import Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from cactus.atomic import write_text
from cactus.data.subsets import Subset
from cactus.report import svg
from cactus.report.data import MAX_DRAWN, build_report, subset_groups

__all__ = ["MAX_DRAWN", "build_report", "render_report", "subset_groups", "write_report"]


def render_report(content: dict) -> str:
    """The HTML page of `build_report`'s content."""
    env = Environment(loader=PackageLoader("cactus.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    charts = {
        "curve": Markup(svg.threshold_curve(content["curve"])) if content["curve"] else None,
        "heatmaps": [Markup(svg.heatmap(s["view"])) for s in content["worst"]],
        "trees": [Markup(svg.dendrogram(s["tree"])) if s["tree"] else None for s in content["worst"]],
    }
    return env.get_template("report.html.j2").render(report=content, charts=charts, max_drawn=MAX_DRAWN)


def write_report(path: str | os.PathLike, subsets: Sequence[Subset], **options) -> dict:
    """`build_report(subsets, **options)` written to `path` as one HTML file (atomically); returns the content."""
    content = build_report(subsets, **options)
    write_text(path, render_report(content))
    return content
