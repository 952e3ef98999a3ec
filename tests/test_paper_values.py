"""Tests of support.paper_values: the book's file loads, and a malformed file is refused by name."""

import copy
import json

import pytest

from support import paper_values as pv


def test_the_book_file_loads_with_every_figure_the_chapters_use():
    figures = pv.load()
    assert {"v1_insight1", "v1_insight2", "v1_insight3", "v4_obs1", "v4_obs2"} <= set(
        figures
    )
    obs1 = figures["v4_obs1"]
    assert obs1.version == "v4" and obs1.depths == (1, 2, 4, 8, 16)
    relu = obs1.series["relu_mode"]
    assert list(relu.values) == [1, 2, 4, 8, 16]  # depth labels become ints
    assert relu.values[16] == pytest.approx(1.45) and relu.uncertainty == 0.05
    insight2 = figures["v1_insight2"].series
    assert insight2["lowrank_lowrank_rho_init"].values == (1.2, 1.4)  # a range
    assert insight2["normal_lowrank_target_rho"].values == pytest.approx(2.07)
    assert figures["v4_obs2"].series["rho_depth16"].values["tanh"] == pytest.approx(
        1.38
    )
    for (
        fig
    ) in figures.values():  # every depth-indexed series lies on the figure's depths
        for s in fig.series.values():
            if s.by == "depth":
                assert set(s.values) <= set(fig.depths)


@pytest.fixture
def good(tmp_path):
    raw = json.loads((pv.paths.repository_root() / pv.FILE).read_text())

    def write(mutate):
        doc = copy.deepcopy(raw)
        mutate(doc)
        path = tmp_path / "values.json"
        path.write_text(json.dumps(doc))
        return path

    return write


def _set(path, value):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


OBS1 = ("figures", "v4_obs1")
RELU = (*OBS1, "series", "relu_mode")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set(("figures",), []), "figures: expected dict"),
        (_delete((*OBS1, "how_read")), "missing field 'how_read'"),
        (_set((*OBS1, "extra"), 1), "unknown field"),
        (_set((*OBS1, "version"), "v2"), "version: must be one of"),
        (_set((*OBS1, "depths"), [0, 1]), "depths: must be positive integers"),
        (_set((*OBS1, "series"), {}), "no series"),
        (_set((*RELU, "uncertainty"), -0.1), "uncertainty: must be >= 0"),
        (_set((*RELU, "uncertainty"), "0.05"), "uncertainty: expected Real"),
        (
            _set((*RELU, "values"), {"two": 2.0}),
            "depth 'two' is not a positive integer",
        ),
        (_set((*RELU, "values"), {"2": "2.0"}), "a value must be a number"),
        (_set((*RELU, "values"), {"2": [2.1, 2.0]}), "a range \\[low, high\\]"),
        (_set((*RELU, "values"), {}), "non-empty object"),
    ],
)
def test_malformed_files_are_refused_with_the_place_named(good, mutate, message):
    with pytest.raises(pv.PaperValuesError, match=message):
        pv.load(good(mutate))


def test_invalid_json_is_refused(tmp_path):
    path = tmp_path / "values.json"
    path.write_text("figures: {}")  # YAML, not JSON
    with pytest.raises(pv.PaperValuesError, match="not valid JSON"):
        pv.load(path)
