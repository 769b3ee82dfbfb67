"""core/image_results.py and the score histogram: counts at a threshold, the slider range, the
metrics table and verdict on hand-made cases; a real tiny image run (one per module) for loading
results, the gallery (order, filters, overlays equal to those the run saved) and the fallback
when the dataset is gone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import IMG_TINY, REPO, only_run_dir
from core import results, runs_tables
from core.figures.results import DEFECT_COLOUR, NORMAL_COLOUR, score_histogram
from core.images import results as img
from core.images.overlays import OUTLINE, REGION, outlined, overlay

SAMPLE = REPO / "data" / "samples" / "images"  # 60 train, 25 test (10 good, 15 with masks)


def make_image_run(root: Path) -> Path:
    """A finished tiny image-only run on a copy of the bundled sample, in `root/ws`."""
    data = shutil.copytree(SAMPLE, root / "images")
    proc = subprocess.run(
        [sys.executable, "-m", "core.pipeline", "run", "--img-data", str(data), *IMG_TINY,
         "--workdir", str(root / "ws")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": "1"})  # tiny models: one thread is fastest here
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return only_run_dir(root / "ws")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_image_run(tmp_path_factory.mktemp("image-results"))


@pytest.fixture(scope="module")
def res(run_dir) -> img.ImageResults:
    return img.load_image_results(run_dir)


# ---------------------------------------------------------------- hand cases

def test_the_image_slider_reaches_every_share_up_to_all_images():
    """Images share the series' slider by flagged share (`core.results.threshold_grid`), from
    one image up to all of them: a test set is often half defects."""
    scores = np.array([0.2, 0.3, 0.5, 0.9, 1.0])
    grid = results.threshold_grid(scores, 0.55, n=50, shares=(0.0, 1.0))
    shares = {results.flagged_share(scores, t) for t in grid}
    assert 0.55 in grid and min(shares) <= 0.2 and max(shares) == 0.8  # all but the lowest


METRICS = {"image_auroc": 0.7, "image_auprc": 0.8, "f1": 0.6, "pixel_auroc": None,
           "best_f1": 0.75,
           "baselines": {"mean_image": {"image_auroc": 0.9, "image_auprc": 0.85, "f1": 0.5,
                                        "pixel_auroc": 0.4}}}


def test_metrics_table_rows_and_columns():
    table = img.image_metrics_table(METRICS)
    assert table.index.tolist() == ["model", "mean_image"]
    assert table.columns.tolist() == ["image AUROC", "image AUPRC", "F1 at threshold",
                                      "pixel AUROC"]
    assert table.loc["mean_image", "image AUROC"] == 0.9
    assert np.isnan(table.loc["model", "pixel AUROC"])  # None: undefined


def test_baseline_verdict_says_who_wins_on_image_auroc():
    assert "does not beat" in img.image_baseline_verdict(METRICS)
    better = METRICS | {"image_auroc": 0.95}
    assert img.image_baseline_verdict(better).startswith("The model beats the mean-image")
    assert "+0.050" in img.image_baseline_verdict(better)
    assert "undefined" in img.image_baseline_verdict(METRICS | {"image_auroc": None})
    assert "no mean-image baseline" in img.image_baseline_verdict(METRICS | {"baselines": {}})


def test_histogram_splits_normal_and_defect_and_marks_the_threshold():
    scores, labels = np.array([0.1, 0.2, 0.25, 0.8, 0.9]), np.array([0, 0, 0, 1, 1])
    fig = score_histogram(scores, labels, 0.5, "anomaly score (a.u.)", "images")
    assert [t.name for t in fig.data] == ["normal (label 0)", "defect (label 1)"]
    assert [list(t.x) for t in fig.data] == [[0.1, 0.2, 0.25], [0.8, 0.9]]
    assert [t.marker.color for t in fig.data] == [NORMAL_COLOUR, DEFECT_COLOUR]
    assert fig.data[0].xbins.to_plotly_json() == fig.data[1].xbins.to_plotly_json()  # same bins
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 0.5 and line.line.dash == "dash"
    assert fig.layout.xaxis.title.text == "anomaly score (a.u.)"
    assert fig.layout.yaxis.title.text == "images (count)"
    unlabelled = score_histogram(scores, None, 0.5)
    assert len(unlabelled.data) == 1 and list(unlabelled.data[0].x) == scores.tolist()


def test_gallery_tile_shows_the_image_with_flagged_and_true_outlines_beside_its_overlay():
    image = np.full((1, 8, 8), 0.5, dtype=np.float32)  # (C, H, W) a flat grey part
    amap = np.zeros((8, 8), dtype=np.float32)
    amap[2:5, 2:5] = 3.0  # the flagged region at threshold 1
    mask = np.zeros((8, 8))
    mask[5:8, 5:8] = 1
    plain = outlined(image, amap > 1.0, mask)
    assert plain.shape == (8, 8, 3) and plain.dtype == np.uint8
    blue, green = (plain == REGION).all(-1), (plain == OUTLINE).all(-1)
    assert blue.sum() == 8 and blue[2:5, 2:5].sum() == 8 and not blue[3, 3]  # a ring
    assert green.sum() == 8 and green[5:8, 5:8].sum() == 8 and not green[6, 6]
    untouched = ~(blue | green)
    assert (plain[untouched] == 127).all()  # the image itself, not darkened by the map
    item = img.GalleryItem("a.png", "dent", 1, 3.0, True, overlay(image, amap, 3.0, mask), True,
                           plain)
    tile = item.tile
    assert tile.shape == (8, 8 + 4 + 8, 3)
    assert (tile[:, :8] == plain).all() and (tile[:, 8:12] == 255).all()
    assert (tile[:, 12:] == item.overlay).all()
    assert img.GalleryItem("a.png", "dent", 1, 3.0, True, item.overlay, False).tile is \
        item.overlay  # no image to put beside it (the saved overlay only)


def test_find_mask_and_saved_overlay_follow_the_naming_conventions(tmp_path):
    folder = tmp_path / "ground_truth" / "scratch_deep"
    folder.mkdir(parents=True)
    (folder / "003_mask.PNG").write_bytes(b"")
    (folder / "004.png").write_bytes(b"")
    assert img.find_mask(tmp_path, "test/scratch_deep/003.png", "scratch_deep").name \
        == "003_mask.PNG"
    assert img.find_mask(tmp_path, "test/scratch_deep/004.jpg", "scratch_deep").name == "004.png"
    assert img.find_mask(tmp_path, "test/scratch_deep/005.png", "scratch_deep") is None
    assert img.find_mask(tmp_path, "test/good/003.png", "good") is None
    (tmp_path / "overlays").mkdir()
    for name in ("001_scratch_deep_003.png", "002_deep_003.png", "1000__7.png"):
        (tmp_path / "overlays" / name).write_bytes(b"")
    assert img.saved_overlay(tmp_path, "test/scratch_deep/003.png").name \
        == "001_scratch_deep_003.png"
    assert img.saved_overlay(tmp_path, "7.png").name == "1000__7.png"  # a flat dataset
    assert img.saved_overlay(tmp_path, "test/deep/004.png") is None


def test_per_type_auroc_ranks_each_kind_against_the_normal_images():
    from core.images.stages import per_type_auroc
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    types = np.array(["good"] * 3 + ["hole", "hole", "crack", "crack"])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.25, 0.05])
    assert per_type_auroc(scores, labels, types) == {"crack": pytest.approx(2 / 6),
                                                      "hole": 1.0}
    assert per_type_auroc(scores[3:], labels[3:], types[3:]) == {}  # no normal image


def test_per_type_pixel_auroc_takes_each_kinds_pixels_with_the_normal_images_only():
    """A map that finds the holes where they are and lights up the crack images everywhere
    but in the crack: hole 1.0, crack 0.0; a kind without a known mask is left out."""
    from core.images.stages import Scored, per_type_pixel_auroc
    labels = np.array([0, 0, 1, 1, 1])
    types = np.array(["good", "good", "hole", "crack", "stain"])
    masks = np.zeros((5, 4, 4), np.uint8)
    masks[2, 0, 0] = masks[3, 1, 1] = masks[4, 2, 2] = 1
    maps = np.full((5, 4, 4), 0.5, np.float32)
    maps[2, 0, 0] = 2.0
    maps[3] = 3.0
    maps[3, 1, 1] = 0.0
    known = np.array([True, True, True, True, False])
    scored = Scored(maps, maps.max(axis=(1, 2)), None, None, masks, known, maps[:, None])
    assert per_type_pixel_auroc(maps, scored, labels, types) == {"crack": 0.0, "hole": 1.0}


def test_the_score_title_names_what_made_the_maps():
    cfg = {"image_score": "topk_mean", "topk": 0.01, "error": "l2"}
    normal = {"normalized_by": 100, "neighbours": 20, "two_sided": True}
    head = img._score_title({"method": "head"} | normal, cfg)
    assert "squared error and the defect heads' mean defect probability, their z-scores added" in head
    assert "maps at each pixel of the 20 normal images most like it" in head
    with_bank = img._score_title({"method": "head", "head_knn": True} | normal, cfg)
    assert "probability and their features' distance to normal ones, their z-scores" in with_bank
    capped = img._score_title({"method": "head", "map_cap": 10.0} | normal, cfg)
    assert "their z-scores, each capped at 10, added" in capped
    by_shape = img._score_title({"method": "head", "match_shape": True} | normal, cfg)
    assert "of the 20 normal images most like it in shape, above or below it" in by_shape
    by_head = img._score_title({"method": "head", "match_shape": True, "match_head": 0.5}
                               | normal, cfg)
    assert "most like it in shape and in what its defect heads see, above or below" in by_head
    for before in ({}, {"method": "reconstruction"}):  # runs scored before the head existed
        title = img._score_title(before, cfg)
        assert "squared error, pixels in [0, 1]" in title and "head" not in title


# ---------------------------------------------------------------- a real run

@pytest.mark.slow
def test_load_reads_the_run_and_its_dataset(run_dir, res):
    scoring = json.loads((run_dir / "swinmae" / "scoring.json").read_text())
    assert len(res.scores) == res.maps.shape[0] == 25 and res.maps.shape[1:] == (64, 64)
    assert res.threshold == scoring["threshold"] and res.image_size == 64
    assert res.channels == 1 and res.resize == "resize"  # the sample is grayscale
    assert res.data_root == run_dir.parent.parent.parent / "images" and res.data_note is None
    assert set(res.metrics["baselines"]) == {"mean_image"}
    assert res.checkpoint == run_dir / "swinmae" / "best.pt"
    assert "top 1%" in res.score_title and scoring["neighbours"] == 10  # the default
    assert "units of the error at each pixel of the 10 normal images most like it" \
        in res.score_title
    assert "above or below" in res.score_title  # two-sided maps, the default
    assert res.method == scoring["method"] and f"score.method: {res.method}" in res.maps_caption
    assert res.coarse is None  # a reconstruction run: the coarse scale is the head's
    kinds = {"missing_pattern", "scratch", "spot"}  # the sample's defect types, each vs normal
    assert set(res.metrics["per_type"]) == set(res.metrics["baselines"]["mean_image"]["per_type"]) \
        == set(res.metrics["per_type_pixel"]) == kinds
    # the image-only run is pickable, and only its image stream has results
    assert [e["run_id"] for e in runs_tables.finished_runs(run_dir.parent.parent)] == [run_dir.name]
    assert [s.name for s in results.result_streams(run_dir)] == ["swinmae"]


@pytest.mark.slow
def test_the_maps_caption_says_when_the_maps_add_a_coarse_scale(res):
    assert res.maps_caption == img.METHOD_CAPTIONS[res.method]  # one scale
    head = replace(res, method="head", coarse={"sigma": 16.0, "weight": 1.0})
    assert head.maps_caption.startswith(img.METHOD_CAPTIONS["head"])
    assert "two scales" in head.maps_caption and "smoothed at 16 px" in head.maps_caption
    assert "image score reads the fine map only" in head.maps_caption
    assert "score.head_knn" not in head.maps_caption
    assert "score.head_knn" in replace(head, head_knn=True).maps_caption
    assert "against normal images' smoothed alike" in head.maps_caption  # before the count
    counted = replace(head, coarse=head.coarse | {"neighbours": 40}).maps_caption
    assert "against its 40 nearest normal images' smoothed alike" in counted
    above = replace(head, coarse=head.coarse | {"neighbours": 40, "two_sided": False})
    assert "where it rises above its 40 nearest normal images' smoothed" in above.maps_caption


@pytest.mark.slow
def test_gallery_is_sorted_by_score_with_overlays_and_masks(res):
    items = img.gallery(res, res.threshold, 16)
    assert len(items) == 16
    scores = [it.score for it in items]
    assert scores == sorted(res.score, reverse=True)[:16]
    for it in items:
        assert it.overlay.shape == (64, 64, 3) and it.overlay.dtype == np.uint8
        assert it.image.shape == (64, 64, 3) and it.tile.shape == (64, 132, 3)
        assert it.flagged == (it.score > res.threshold)
        if it.flagged:  # a score above the threshold has map pixels above it: outlined
            assert (it.image == REGION).all(-1).any(), it.file
        assert it.mask_known == (it.label == 1)  # every defect of the sample has a mask
    lower = img.gallery(res, -1.0, 3)
    assert all(it.flagged for it in lower) and "· flagged" in lower[0].caption
    defects, normal = (img.gallery(res, res.threshold, 30, show=s) for s in ("defects", "normal"))
    assert (len(defects), len(normal)) == (15, 10)
    assert {it.label for it in defects} == {1} and {it.defect_type for it in normal} == {"good"}
    by_file = [it.file for it in img.gallery(res, res.threshold, 30, order="file")]
    assert by_file == sorted(by_file) and len(by_file) == 25
    with pytest.raises(ValueError, match="order"):
        img.gallery(res, res.threshold, 3, order="random")


@pytest.mark.slow
def test_overlays_made_on_the_fly_equal_those_the_run_saved(run_dir, res):
    saved = sorted((run_dir / "swinmae" / "overlays").iterdir())
    items = img.gallery(res, res.threshold, len(saved))
    for path, it in zip(saved, items):
        assert path.name.endswith(f"_{Path(it.file).parent.name}_{Path(it.file).stem}.png")
        expected = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(it.overlay.astype(int) - expected).max() <= 1  # float16 maps: rounding
    assert items[0].mask_known and (items[0].overlay == [0, 220, 90]).all(-1).any()  # outline


@pytest.mark.slow
def test_without_the_dataset_the_saved_overlays_show(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name,
                           ignore=shutil.ignore_patterns("*.pt"))
    cfg = yaml.safe_load((copy / "run.yaml").read_text())
    cfg["pipeline"]["img_data"] = str(tmp_path / "gone")
    (copy / "run.yaml").write_text(yaml.safe_dump(cfg))
    res = img.load_image_results(copy)
    assert res.data_root is None and "gone" in res.data_note and res.checkpoint is None
    n_saved = len(list((copy / "swinmae" / "overlays").iterdir()))
    items = img.gallery(res, res.threshold, 25)
    assert all(it.overlay is not None for it in items[:n_saved])
    assert all(it.overlay is None for it in items[n_saved:])
    (copy / "swinmae" / "maps.npz").unlink()
    with pytest.raises(results.ResultsError, match="maps.npz"):
        img.load_image_results(copy)
