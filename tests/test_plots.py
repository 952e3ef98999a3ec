"""Tests of the book's figure style (support/plots.py)."""

import matplotlib as mpl
import pytest

from support import plots


def test_apply_style_sets_the_book_defaults():
    import pandas as pd

    with mpl.rc_context(), pd.option_context("display.max_colwidth", 50):
        plots.apply_style()
        assert pd.get_option("display.max_colwidth") is None
        for key, value in plots.STYLE.items():
            assert mpl.rcParams[key] == (
                list(value) if isinstance(value, tuple) else value
            ), key


def test_depth_colors_are_distinct_and_ordered_light_to_dark():
    colors = plots.depth_colors([16, 1, 4])
    assert list(colors) == [1, 4, 16]
    lum = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b, _ in colors.values()]
    assert lum[0] > lum[1] > lum[2]
    assert len(plots.depth_colors([3])) == 1
    with pytest.raises(ValueError, match="no depths"):
        plots.depth_colors([])


def test_figure_keeps_the_column_width():
    import matplotlib.pyplot as plt

    fig, axes = plots.figure(2, 3, width=7.0, row_height=2.0)
    assert axes.shape == (2, 3) and tuple(fig.get_size_inches()) == (7.0, 4.0)
    plt.close(fig)
    for bad in (dict(width=7.5), dict(width=0), dict(row_height=-1)):
        with pytest.raises(ValueError):
            plots.figure(**bad)
