"""Tests of the book's figure style (support/plots.py)."""

import matplotlib as mpl
import pytest

from support import plots


def test_a_styled_figure_fits_the_column_with_legible_text_and_no_box():
    """What the style promises, read off a figure drawn under it (not the settings dict): the
    width fits the column, every text is at least 9 pt, the top and right spines and the legend
    frame are off, the grid is on; and pandas shows table cells whole."""
    import matplotlib.pyplot as plt
    import pandas as pd

    with mpl.rc_context(), pd.option_context("display.max_colwidth", 50):
        plots.apply_style()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1], label="line")
        ax.set(title="title", xlabel="x", ylabel="y")
        legend = ax.legend()
        fig.canvas.draw()
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *legend.get_texts()]
        texts += ax.get_xticklabels() + ax.get_yticklabels()
        assert min(t.get_fontsize() for t in texts) >= 9
        assert fig.get_size_inches()[0] <= plots.MAX_WIDTH_IN
        assert (
            not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
        )
        assert not legend.get_frame_on()
        assert any(line.get_visible() for line in ax.get_xgridlines())
        assert pd.get_option("display.max_colwidth") is None
        plt.close(fig)


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
        with pytest.raises(ValueError, match="width|row_height"):
            plots.figure(**bad)
