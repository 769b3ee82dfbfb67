"""Server-side cost of one live-panel refresh on the Train page, for a long run.

Builds a fake running run (10,000 logged training steps, 50 epochs, a 200,000-line log) in a
temporary workspace and times what one `run_every` tick of the live fragment does on the server:
`core.train_view.live_view(...)` plus both figures (stage graph, loss curves), and, with
`--apptest`, the whole Train page rendered headless by Streamlit's AppTest (every widget and the figures'
JSON, which the fragment also sends). Prints `live_refresh_ms=<median>`.

    python benchmarks/live_panel.py [--repeats 30] [--steps 10000] [--apptest]"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.figures.live import loss_figure, stage_graph  # noqa: E402
from core.fileio import write_json  # noqa: E402
from core import train_view  # noqa: E402
from core.train_view import live_view  # noqa: E402
from core.progress import initial_progress  # noqa: E402
from core.streams import stage_names  # noqa: E402


def fake_run(ws: Path, steps: int, epochs: int = 50, log_lines: int = 200_000) -> Path:
    """A run in the middle of training: progress.json (this process as the live pid),
    metrics.jsonl with `steps` step lines and `epochs` epoch lines, a long pipeline.log."""
    run = ws / "runs" / "20260101-000000-bench"
    run.mkdir(parents=True)
    (run / "run.yaml").write_text("pipeline: {ts_data: x}\npatchtst: {train: {epochs: 60}}\n")
    per_epoch = steps // epochs
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"time": 0, "stage": "train_patchtst", "stream": "patchtst",
                                "kind": "step", "epoch": (step - 1) // per_epoch + 1,
                                "step": step, "train_loss": 1.0 / step ** 0.3, "lr": 1e-3,
                                "samples_per_s": 950.0}) + "\n")
            if step % per_epoch == 0:
                f.write(json.dumps({"time": 0, "stage": "train_patchtst", "stream": "patchtst",
                                    "kind": "epoch", "epoch": step // per_epoch,
                                    "train_loss": 1.0 / step ** 0.3,
                                    "val_loss": 1.1 / step ** 0.3, "best": True}) + "\n")
    with open(run / "pipeline.log", "w") as f:
        f.writelines(f"2026-01-01 00:00:00 INFO        step {i}: a log line of usual length\n"
                     for i in range(log_lines))
    progress = initial_progress(run.name, stage_names(), "running", os.getpid())
    progress["device"] = "cpu (2 threads)"
    for stage in progress["stages"][:1]:
        stage.update(status="done", started=time.time() - 60, ended=time.time() - 50)
    progress["stages"][1].update(status="running", started=time.time() - 50)
    progress["active"] = {"stage": "train_patchtst", "index": 2, "n": len(stage_names()),
                          "epoch": epochs, "n_epochs": 60, "step": steps,
                          "n_steps": steps * 60 // epochs, "eta_s": 512.0, "samples_per_s": 950.0}
    write_json(run / "progress.json", progress)
    return run


def figures(view) -> None:
    """Both figures, serialised as st.plotly_chart sends them."""
    stage_graph(view.stages).to_plotly_json()
    loss_figure(view.curves, log_y=True).to_plotly_json()


def refresh(run: Path) -> None:
    """One tick of the live fragment, minus Streamlit itself."""
    figures(live_view(run, smoothing=0.6, max_points=1500, log_lines=30))


def time_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--apptest", action="store_true", help="also time the page under AppTest")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        run = fake_run(ws, args.steps)

        def cold() -> None:  # a fresh server: metrics.jsonl parsed from its first line
            train_view._TAILS.clear()
            live_view(run, smoothing=0.6)

        view = live_view(run, smoothing=0.6)
        print(f"live_view_cold_ms={time_ms(cold, 5):.1f}")
        print(f"live_view_ms={time_ms(lambda: live_view(run, smoothing=0.6), args.repeats):.1f}")
        print(f"figures_ms={time_ms(lambda: figures(view), args.repeats):.1f}")
        if args.apptest:
            os.environ["ATC_WORKDIR"] = str(ws)
            from streamlit.testing.v1 import AppTest
            page = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")
            at = AppTest.from_file(page, default_timeout=60)
            at.run()
            assert not at.exception, at.exception
            print(f"apptest_page_ms={time_ms(at.run, max(3, args.repeats // 5)):.1f}")
        print(f"live_refresh_ms={time_ms(lambda: refresh(run), args.repeats):.1f}  "
              f"(steps={args.steps}, live_view + both figures, median of {args.repeats})")


if __name__ == "__main__":
    main()
