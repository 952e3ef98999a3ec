"""One figure style for the whole book, so that chapters compare at a glance and read at column width.

``apply_style()`` is called once at the top of every chapter. Figures are at most
``MAX_WIDTH_IN`` inches wide (the content column at 100 dpi) with fonts of at least 9 pt, so
text stays legible where the browser shows them at their natural size; wider layouts stack
panels instead. ``depth_colors`` gives the depth-ordered palette every depth sweep uses (shallow
= light, deep = dark), ``PAPER_MARKER`` the marker style for values read off the paper's
figures, and :func:`figure` makes a figure within the width limit.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

MAX_WIDTH_IN = 7.0
STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}

PAPER_MARKER = {
    "marker": "x",
    "color": "black",
    "linestyle": "none",
    "markersize": 7,
    "label": "paper (read off figure)",
}


def apply_style() -> None:
    """Set the book's matplotlib defaults (figure size, grid, spines, fonts, constrained layout),
    and let pandas show table cells whole (no "..." in the middle of a setting's text)."""
    import pandas as pd

    mpl.rcParams.update(STYLE)
    pd.set_option("display.max_colwidth", None)


def figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = 6.4,
    row_height: float = 3.2,
    **kwargs,
):
    """``plt.subplots`` at the book's size: ``width`` inches (at most ``MAX_WIDTH_IN``) and
    ``row_height`` inches per row of panels. Returns ``(fig, axes)`` as ``plt.subplots`` does."""
    if not 0 < width <= MAX_WIDTH_IN:
        raise ValueError(
            f"figure width must be in (0, {MAX_WIDTH_IN}] inches, got {width}"
        )
    if row_height <= 0:
        raise ValueError(f"row_height must be positive, got {row_height}")
    return plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), **kwargs)


def depth_colors(depths, cmap: str = "viridis") -> dict:
    """Map each depth to a colour, ordered from light (shallow) to dark (deep)."""
    depths = list(depths)
    if not depths:
        raise ValueError("depth_colors: no depths given")
    shades = np.linspace(0.85, 0.05, len(depths)) if len(depths) > 1 else [0.4]
    colormap = mpl.colormaps[cmap]
    return {d: colormap(float(t)) for d, t in zip(sorted(depths), shades)}
