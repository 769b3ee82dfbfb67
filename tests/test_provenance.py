"""provenance.json: data hashes, versions, the git commit, resumes; the rows Runs shows; which
runs used a dataset."""
from __future__ import annotations

import hashlib
import subprocess

from core import provenance
from core.config import load_config
from core.fileio import read_json
from core.run_files import RunFiles
from core.runs import create_run, runs_using, workspace


def test_a_folder_hashes_each_visible_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.png").write_bytes(b"pixels")
    (tmp_path / "b.csv").write_text("x\n1\n")
    (tmp_path / ".hidden").write_text("no")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "junk").write_text("no")
    cfg = load_config([f"pipeline.img_data={tmp_path}", f"pipeline.ts_data={tmp_path / 'b.csv'}"])
    hashes = provenance.data_hashes(cfg)
    assert hashes == {
        "ts_data": {"b.csv": hashlib.sha256(b"x\n1\n").hexdigest()},
        "img_data": {"b.csv": hashlib.sha256(b"x\n1\n").hexdigest(),
                     "train/a.png": hashlib.sha256(b"pixels").hexdigest()}}


def test_git_commit_of_a_checkout_and_of_a_plain_folder(tmp_path):
    assert provenance.git_commit(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert provenance.git_commit(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f").write_text("2")
    assert provenance.git_commit(tmp_path)["dirty"] is True


def test_a_resume_appends_and_keeps_the_first_start(tmp_path, monkeypatch):
    cfg = load_config([f"pipeline.ts_data={tmp_path}"])
    monkeypatch.setattr("sys.argv", ["pipeline", "run", "X"])
    first = provenance.record(tmp_path, cfg, ["patchtst"], "cpu (1 thread), fp32", "fp32", False)
    monkeypatch.setattr("sys.argv", ["pipeline", "resume", "X"])
    provenance.record(tmp_path, cfg, ["patchtst"], "cpu (2 threads), fp32", "fp32", True)
    saved = read_json(tmp_path / RunFiles.provenance)
    assert saved["command"] == first["command"] and saved["command"].endswith("pipeline run X")
    assert [r["command"].split()[-2:] for r in saved["resumes"]] == [["resume", "X"]]
    rows = dict(provenance.provenance_rows(tmp_path))
    assert rows["seed"] == "0" and rows["precision"] == "fp32"
    assert rows["resumed 1"].endswith("resume X")
    assert rows["version: torch"].startswith("2.13.0")


def test_rows_are_empty_without_provenance(tmp_path):
    assert provenance.provenance_rows(tmp_path) == []


def test_runs_using_a_dataset_folder(tmp_path):
    ws = workspace(tmp_path / "ws")
    data, other = tmp_path / "uploads" / "mine", tmp_path / "uploads" / "mine2"
    for folder in (data, other):
        folder.mkdir(parents=True)
    uses_folder = create_run(ws, load_config([f"pipeline.ts_data={data}"]))
    uses_file = create_run(ws, load_config([f"pipeline.ts_data={other}",
                                            f"pipeline.ts_test={data / 'test.csv'}"]))
    create_run(ws, load_config([f"pipeline.ts_data={other}"]))
    (ws / "runs" / "broken").mkdir()
    (ws / "runs" / "broken" / "run.yaml").write_text("pipeline: [")
    assert sorted(runs_using(ws, data)) == sorted([uses_folder.name, uses_file.name])
    assert runs_using(ws, tmp_path / "uploads" / "none") == []
