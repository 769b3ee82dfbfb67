"""The run layout: a name on the class, a path on an instance, and nothing a run writes left
unnamed by it."""
from __future__ import annotations

import pytest

from core.config import read_config
from core.images.files import ImageFiles
from core.run_files import RunFile, RunFiles, StreamFiles
from core.timeseries.files import SeriesFiles


def test_a_name_on_the_class_a_path_on_an_instance(tmp_path):
    run = RunFiles(str(tmp_path))  # a str folder is taken as a Path
    assert RunFiles.config == "run.yaml" and run.config == tmp_path / "run.yaml"
    assert run.stream("patchtst").scores == tmp_path / "patchtst" / "scores.csv"
    assert SeriesFiles(tmp_path).checkpoint == tmp_path / StreamFiles.checkpoint
    assert ImageFiles(tmp_path).maps == tmp_path / "maps.npz"


def entries(layout: type) -> list[str]:
    """The file names a layout class declares, its parents' included."""
    return [v.name for c in layout.__mro__ for v in vars(c).values() if isinstance(v, RunFile)]


def test_no_two_entries_share_a_file():
    for layout in (RunFiles, SeriesFiles, ImageFiles):
        assert len(entries(layout)) == len(set(entries(layout))), layout


@pytest.mark.slow
def test_every_file_a_run_writes_is_named_by_the_layout(both_streams_run):
    run = both_streams_run
    written = {p.name for p in run.iterdir() if not p.name.startswith(".")}
    # stdout.log: only a console-started job; stop_requested.json: only a Stop; export/: on demand
    optional = {RunFiles.stdout, RunFiles.stop_request, RunFiles.export}
    assert written - optional == set(entries(RunFiles)) - optional | {"patchtst", "swinmae"}
    assert {p.name for p in (run / "patchtst").iterdir()} == set(entries(SeriesFiles))
    # this run maps the reconstruction error: no defect head and no memory bank
    # (test_defect_head_run.py and test_knn_run.py check those runs' files)
    assert read_config(run / RunFiles.config).swinmae.score.method == "reconstruction"
    assert {p.name for p in (run / "swinmae").iterdir()} == \
        set(entries(ImageFiles)) - {ImageFiles.head, ImageFiles.knn_bank}
