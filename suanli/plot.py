"""PNG figures of training runs: loss/accuracy curves and BabyGPT's state-transition graph.

matplotlib is an optional extra (``pip install 'suanli[plot]'``); without it the functions raise
:class:`PlotUnavailable`, whose message says what to install. The figures are drawn with
matplotlib's object API on the Agg canvas (no pyplot, so a user's backend and global state are left
alone) and written atomically.

>>> import suanli.plot
>>> suanli.plot.smooth([1.0, 3.0, 2.0, 4.0], 3)
[2.0, 2.0, 3.0, 3.0]
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import SuanliError


class PlotUnavailable(SuanliError, ImportError):
    """matplotlib is not installed."""


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("drawing PNG figures needs matplotlib, which is not installed\n"
                              "  help: pip install 'suanli[plot]'  (or: pip install matplotlib); "
                              "`make demo` installs it") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> str:
    from .io import atomic_write
    path = os.fspath(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return path


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (shrinking at the ends): no lag, unlike an EMA."""
    v = np.asarray(values, dtype=np.float64)
    half = max(0, window // 2)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(v))
    return ((c[hi] - c[lo]) / (hi - lo)).tolist()


def plot_curves(history: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                title: str = "") -> str:
    """Write a PNG of the training curves; returns the path.

    ``history`` is columnar, as :class:`suanli.train.trainer.Trainer` records it:
    ``{"train": {"step": [...], "loss": [...]}, "eval": {"step": [...], "loss": [...], "accuracy": [...]}}``.
    Left panel: training loss (raw, faint, and smoothed) and evaluation loss; right panel (when any
    accuracy was recorded): evaluation accuracy.
    """
    train = history.get("train", {})
    evals = history.get("eval", {})
    accuracy_keys = [k for k in ("accuracy", "train_accuracy") if evals.get(k)]
    panels = 2 if accuracy_keys else 1
    fig = _figure(5.5 * panels, 4.0)
    ax = fig.add_subplot(1, panels, 1)
    if train.get("loss"):
        window = max(1, len(train["loss"]) // 50)
        ax.plot(train["step"], train["loss"], color="tab:blue", alpha=0.15, linewidth=0.6)
        ax.plot(train["step"], smooth(train["loss"], window), color="tab:blue",
                label=f"train loss (mean of {window} steps)" if window > 1 else "train loss")
    if evals.get("loss"):
        ax.plot(evals["step"], evals["loss"], "o-", color="tab:orange", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    if train.get("loss") and min(train["loss"]) > 0 and max(train["loss"]) / min(train["loss"]) > 30:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if accuracy_keys:
        ax2 = fig.add_subplot(1, 2, 2)
        for key, color in zip(accuracy_keys, ("tab:green", "tab:gray")):
            acc = [100 * a for a in evals[key]]
            ax2.plot(evals["step"], acc, "o-", color=color, label=key.replace("_", " "))
            ax2.annotate(f"{acc[-1]:.2f}%", (evals["step"][-1], acc[-1]), textcoords="offset points",
                         xytext=(-6, -6), ha="right", va="top", color=color)
        ax2.set_xlabel("step")
        ax2.set_ylabel("accuracy (%)")
        ax2.grid(alpha=0.3)
        ax2.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_markov_chain(probs: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str = "",
                      highlight: Sequence[str] = ()) -> str:
    """Draw a binary Markov chain over fixed-length states as a PNG; returns the path.

    ``probs[state] = (p0, p1)``: from ``state`` (e.g. ``"101"``) the next token is 0 with ``p0``
    (going to ``"010"``) and 1 with ``p1`` (going to ``"011"``). States in ``highlight`` (e.g. those
    seen in training) are filled. Edge width and darkness follow the probability.
    """
    states = list(probs)
    fig = _figure(10.0, 6.0)          # raises PlotUnavailable first when matplotlib is missing
    from matplotlib.patches import Circle, FancyArrowPatch
    ax = fig.add_subplot(1, 1, 1)
    ax.set_aspect("equal")
    ax.axis("off")
    pos = _layout(states)
    node_r = 0.42
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.6, max(xs) + 1.6)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    fig.canvas.draw()   # fixes the axes box, so the node radius can be converted to points
    points_per_unit = ax.get_window_extent().width * 72 / fig.dpi / (max(xs) - min(xs) + 3.2)
    gap = node_r * points_per_unit + 1   # arrows stop at the node's rim
    for s in states:
        x, y = pos[s]
        seen = s in highlight
        ax.add_patch(Circle((x, y), node_r, facecolor="#cfe3f7" if seen else "white",
                            edgecolor="black", linewidth=1.5, zorder=3))
        ax.text(x, y, s, ha="center", va="center", fontsize=13, family="monospace", zorder=4)
    for s in states:
        for token, p in enumerate(probs[s]):
            t = s[1:] + str(token)
            color = (1 - 0.85 * p,) * 3
            width = 0.6 + 3.0 * p
            label = f"{p:.0%}" if p >= 0.005 else "<1%"
            if t == s:   # self-loop (000 -> 000, 111 -> 111): a small arc outside the circle
                x, y = pos[s]
                r = math.hypot(x, y) or 1.0
                ux, uy = x / r, y / r       # outward, away from the centre
                a = (x + node_r * (ux * 0.7 - uy * 0.7), y + node_r * (uy * 0.7 + ux * 0.7))
                b = (x + node_r * (ux * 0.7 + uy * 0.7), y + node_r * (uy * 0.7 - ux * 0.7))
                ax.add_patch(FancyArrowPatch(a, b, connectionstyle="arc3,rad=-1.8", arrowstyle="-|>",
                                             mutation_scale=14, color=color, linewidth=width, zorder=2))
                lx, ly = x + ux * (node_r + 0.75), y + uy * (node_r + 0.75)
            else:
                (x1, y1), (x2, y2) = pos[s], pos[t]
                rad = 0.15
                mx, my = (x1 + x2) / 2, (y1 + y2) / 2
                reciprocal = _is_edge(t, s)      # 010 <-> 101: the two arcs take opposite sides
                if reciprocal:
                    rad = 0.5
                elif math.hypot(mx + rad * (y2 - y1), my - rad * (x2 - x1)) < math.hypot(mx, my):
                    rad = -rad      # bow away from the centre, clear of the middle nodes
                ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}",
                                             arrowstyle="-|>", mutation_scale=16, color=color,
                                             linewidth=width, shrinkA=gap, shrinkB=gap,
                                             zorder=2))
                # the midpoint of matplotlib's arc3 Bezier curve is mid + rad/2 * (dy, -dx)
                lx = mx + rad / 2 * (y2 - y1)
                ly = my - rad / 2 * (x2 - x1)
            ax.text(lx, ly, label, ha="center", va="center", fontsize=9, zorder=5,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85))
    if title:
        ax.set_title(title, fontsize=12)
    return _save(fig, path)


def _is_edge(a: str, b: str) -> bool:
    """True when state ``b`` can follow state ``a`` (drop the first token, append one)."""
    return a[1:] == b[:-1]


def _layout(states: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Node positions: a hand-made planar drawing of the 3-bit de Bruijn graph, else a circle."""
    if sorted(states) == [format(i, "03b") for i in range(8)]:
        return {"000": (-3.6, 0.0), "001": (-1.8, 1.8), "011": (1.8, 1.8), "111": (3.6, 0.0),
                "110": (1.8, -1.8), "100": (-1.8, -1.8), "010": (-0.7, 0.0), "101": (0.7, 0.0)}
    n = len(states)
    return {s: (3 * math.cos(math.pi / 2 - 2 * math.pi * i / n), 3 * math.sin(math.pi / 2 - 2 * math.pi * i / n))
            for i, s in enumerate(states)}
