"""A Keras `plot_model`-style diagram of a layer graph, drawn with matplotlib boxes and arrows
(no graphviz): one box per node with its layers and output shape, arrows for the data flow,
residual connections as arcs beside the boxes."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._canvas import figure, save

_COLOURS = {"Conv": "#cfe2f3", "Linear": "#fce5cd", "Pool": "#d9ead3", "add": "#eeeeee", "Input": "#ffffff"}
_BOX_W, _BOX_H, _STEP = 4.2, 0.62, 1.0  # data units: box size and vertical distance between boxes
_PER_COLUMN = 22


def _colour(ops: Sequence[str]) -> str:
    first = ops[0]
    for key, colour in _COLOURS.items():
        if key in first:
            return colour
    return "#f3f3f3"


def _shape(shape: Sequence[int]) -> str:
    return "(None, " + ", ".join(map(str, shape)) + ")"


def _columns(nodes: Sequence[dict]) -> list[int]:
    """The column of each node: columns of about equal length, at most `_PER_COLUMN` boxes,
    broken where no arrow but the one to the next box crosses (never inside a residual block)."""
    n = len(nodes)
    edges = [(a, b) for b, node in enumerate(nodes) for a in node["inputs"]]
    clean = [[(a, b) for a, b in edges if a <= k < b] == [(k, k + 1)] for k in range(n)]  # may end a column
    target = -(-n // max(1, -(-n // _PER_COLUMN)))  # boxes per column if they could be split anywhere
    column_of: list[int] = []
    start = 0
    while start < n:
        if n - start <= _PER_COLUMN:
            end = n
        else:
            cuts = [k for k in range(start, start + _PER_COLUMN) if clean[k]]
            end = min(cuts, key=lambda k: abs(k + 1 - start - target)) + 1 if cuts else start + _PER_COLUMN
        column_of += [column_of[-1] + 1 if column_of else 0] * (end - start)
        start = end
    return column_of


def architecture_figure(nodes: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Save the diagram of `nodes` as `models.summary.layer_graph` returns them ({"name", "ops",
    "shape", "inputs", "params"}); long graphs wrap into columns."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    n = len(nodes)
    column_of = _columns(nodes)
    columns = column_of[-1] + 1 if n else 1
    row_of = [column_of[:i].count(column_of[i]) for i in range(n)]
    per_col = max(row_of, default=0) + 1
    width = _BOX_W + 1.6  # room for the residual arcs at the right of each column
    pos = [(c * width, -r * _STEP) for c, r in zip(column_of, row_of)]  # box centres
    fig = figure(0.95 * width * columns + 0.3, 0.5 * per_col * _STEP + 0.8)
    ax = fig.add_subplot()
    for (x, y), node in zip(pos, nodes):
        ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", fc=_colour(node["ops"]),
                                    ec="#444444", lw=0.8))
        params = f"   {node['params']:,} params" if node["params"] else ""
        ops = " + ".join(node["ops"])
        ax.text(x, y + 0.12, f"{node['name']}: {ops}" if node.get("kind") == "module" else ops, ha="center", va="center", fontsize=6.5)
        ax.text(x, y - 0.16, f"{_shape(node['shape'])}{params}", ha="center", va="center", fontsize=6,
                color="#333333", family="monospace")
    for j, node in enumerate(nodes):
        for i in node["inputs"]:
            (x0, y0), (x1, y1) = pos[i], pos[j]
            if j == i + 1 and x0 == x1:
                start, end, style = (x0, y0 - _BOX_H / 2), (x1, y1 + _BOX_H / 2), "arc3"
            elif column_of[j] != column_of[i]:  # the graph continues at the top of the next column
                start, end, style = (x0 + _BOX_W / 2, y0), (x1 - _BOX_W / 2, y1), "arc3,rad=-0.15"
            else:  # a connection that skips boxes: an arc on the right
                start, end = (x0 + _BOX_W / 2, y0), (x1 + _BOX_W / 2, y1)
                style = "arc3,rad=-0.45" if x0 == x1 else "arc3,rad=-0.15"
            ax.add_patch(FancyArrowPatch(start, end, connectionstyle=style, arrowstyle="-|>", mutation_scale=7,
                                         lw=0.8, color="#555555"))
    ax.set_xlim(-_BOX_W / 2 - 0.1, (columns - 1) * width + _BOX_W / 2 + 1.4)
    ax.set_ylim(-(per_col - 1) * _STEP - _BOX_H, _BOX_H)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)
