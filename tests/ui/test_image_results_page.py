"""The Results page on an image-only run (made once per module by the real pipeline): metrics
beside the mean-image baseline, the live threshold, the score histogram, the gallery and its
filter, and downloads that do not clash with the time-series ones."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from core import results
from test_image_results import make_image_run  # tests/ is on the path, as for conftest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return make_image_run(tmp_path_factory.mktemp("ui-image-results"))


@pytest.fixture
def at(finished, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATC_WORKDIR", str(finished.parent.parent))
    app = AppTest.from_file(str(REPO / "pages" / "results.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def test_page_shows_metrics_histogram_gallery_and_downloads(at, finished):
    key = f"results_{finished.name}_swinmae"
    assert at.selectbox(key="results_pick").value == finished.name
    assert at.subheader[0].value == "Images (Swin MAE)"
    assert at.dataframe[0].value.index.tolist() == ["model", "mean_image"]
    assert "mean-image baseline on image AUROC" in at.markdown[0].value
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert [t["name"] for t in spec["data"]] == ["normal (label 0)", "defect (label 1)"]
    assert spec["layout"]["shapes"][0]["x0"] == pytest.approx(
        json.loads((finished / "swinmae" / "scoring.json").read_text())["threshold"])
    shown = captions(at)
    assert len(shown) == 16  # of 25 scored images
    scores = [float(c.split("score ")[1].split(" ·")[0]) for c in shown]
    assert scores == sorted(scores, reverse=True)
    assert {d.key for d in at.get("download_button")} == {
        f"{key}_dl_scores", f"{key}_dl_ckpt", "results_export"}  # export: Use this model
    assert not any(d.proto.disabled for d in at.get("download_button"))


def test_moving_the_slider_changes_the_flagged_count(at, finished):
    slider = at.select_slider(key=f"results_{finished.name}_swinmae_threshold")
    scoring = json.loads((finished / "swinmae" / "scoring.json").read_text())
    table = pd.read_csv(finished / "swinmae" / "scores.csv")
    scores, labels = table["score"].to_numpy(), table["label"].to_numpy()
    grid = results.threshold_grid(scores, scoring["threshold"], shares=(0.0, 1.0))
    before = metric(at, "Flagged images")
    assert before.endswith("of 25") and metric(at, "F1")
    slider.set_value(grid[-1]).run()  # the highest position: one image, or none
    assert not at.exception, at.exception
    assert metric(at, "Flagged images") in ("0 of 25", "1 of 25") != before
    slider.set_value(grid[0]).run()
    assert int(metric(at, "Flagged images").split()[0]) >= 24  # all but perhaps the lowest
    # every defect but the lowest-scoring image, when that is one
    flagged = scores > grid[0]
    assert metric(at, "Recall") == f"{labels[flagged].sum() / labels.sum():.3f}"


def test_gallery_filter_shows_defects_or_normal_images(at, finished):
    show = at.selectbox(key=f"results_{finished.name}_swinmae_show")
    show.set_value("normal").run()
    assert not at.exception, at.exception
    assert len(captions(at)) == 10 and all(" · good · " in c for c in captions(at))
    show.set_value("defects").run()
    assert len(captions(at)) == 15 and not any(" · good · " in c for c in captions(at))


def test_tiles_show_the_image_beside_its_map_and_open_large(at, finished):
    key = f"results_{finished.name}_swinmae"
    tile = at.image[0]
    assert "Left: the image" in " ".join(c.value for c in at.caption)
    at.button(key=f"{key}_open_0").click().run()
    assert not at.exception, at.exception
    # a dialog is drawn in the app's event area, not in main
    dialogs = [b for area in at._tree.children.values() for b in area.children.values()
               if b.type == "dialog"]
    assert len(dialogs) == 1 and dialogs[0].proto.dialog.title == "Image and anomaly map"
    (large,) = dialogs[0].get("image")
    assert large.captions == tile.captions  # the first tile, large
