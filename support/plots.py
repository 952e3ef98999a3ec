"""One figure style for the whole book, so that chapters compare at a glance.

``apply_style()`` is called once at the top of every chapter; ``depth_colors`` gives the
depth-ordered palette every depth sweep uses (shallow = light, deep = dark), and
``paper_marker`` the marker style for values read off the paper's figures.
"""
from __future__ import annotations

import matplotlib as mpl
import numpy as np

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}

PAPER_MARKER = {"marker": "x", "color": "black", "linestyle": "none", "markersize": 7,
                "label": "paper (read off figure)"}


def apply_style() -> None:
    """Set the book's matplotlib defaults (figure size, grid, spines, fonts)."""
    mpl.rcParams.update(STYLE)


def depth_colors(depths, cmap: str = "viridis") -> dict:
    """Map each depth to a colour, ordered from light (shallow) to dark (deep)."""
    depths = list(depths)
    if not depths:
        raise ValueError("depth_colors: no depths given")
    shades = np.linspace(0.85, 0.05, len(depths)) if len(depths) > 1 else [0.4]
    colormap = mpl.colormaps[cmap]
    return {d: colormap(float(t)) for d, t in zip(sorted(depths), shades)}
