"""Device and precision choice, the device facts (NVML readings through a stand-in module), how
many processes train, how the ranks' event lines are relayed, and how the ranks' outcomes
become the training stage's result."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from core import devices
from core.config import defaults, load_config, read_config, save_config
from core.devices import Runtime, resolve_precision
from core.distributed import EVENT, _raise_for_outcomes, _relay, planned_world
from core.errors import ConfigError, DataError, StopRequested, TrainingError
from core.fileio import write_json

CPU = torch.device("cpu")


def test_precision_auto_on_cpu_is_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: None)
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: "AMX")
    assert resolve_precision("auto", CPU) == "bf16"
    assert Runtime.on(CPU).precision == "bf16"
    assert Runtime.on(CPU, cpu_bf16=False).precision == "fp32"  # a stream that does not gain


def test_precision_auto_is_per_stream_on_a_bf16_cpu(monkeypatch):
    """PatchTST measured slower under bf16 autocast on such a CPU (`Stream.cpu_bf16`): auto
    trains it in fp32 there, Swin MAE in bf16; a run's device line says bf16 when any of its
    streams trains in it. An explicit bf16 stands for both."""
    from core.config import load_config
    from core.runner import run_runtime, stream_runtime
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: "AVX-512 BF16")
    assert resolve_precision("auto", CPU, cpu_bf16=False) == "fp32"
    cfg = load_config(["pipeline.device=cpu", "pipeline.ts_data=x", "pipeline.img_data=y"])
    assert stream_runtime(cfg, "patchtst").precision == "fp32"
    assert stream_runtime(cfg, "swinmae").precision == "bf16"
    assert run_runtime(cfg).precision == "bf16"
    ts_only = load_config(["pipeline.device=cpu", "pipeline.ts_data=x"])
    assert run_runtime(ts_only).precision == "fp32"
    forced = load_config(["pipeline.device=cpu", "pipeline.ts_data=x", "pipeline.precision=bf16"])
    assert stream_runtime(forced, "patchtst").precision == "bf16"
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: None)
    assert stream_runtime(cfg, "swinmae").precision == "fp32"


@pytest.mark.parametrize("units", [None, "AVX-512 BF16"])
def test_explicit_cpu_precisions_stand_whatever_the_units(monkeypatch, units):
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: units)
    assert [resolve_precision(p, CPU) for p in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]


@pytest.mark.parametrize("flags, units", [
    ("fpu sse2 avx2 avx512f avx512bw", None),  # AVX-512 without its bf16 extension
    ("fpu avx512f avx512_bf16 avx512_vnni", "AVX-512 BF16"),
    ("fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", "AMX"),
])
def test_cpu_bf16_units_read_the_flags(tmp_path, flags, units):
    info = tmp_path / "cpuinfo"
    core = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n"
    info.write_text(core + core.replace(": 0", ": 1"))
    assert devices.cpu_bf16_units(info) == units


def test_cpu_bf16_units_without_cpuinfo_are_none(tmp_path):
    assert devices.cpu_bf16_units(tmp_path / "absent") is None


def test_runtime_autocast_runs_in_the_chosen_dtype():
    lin, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with Runtime(CPU, precision).autocast():
            assert lin(x).dtype == dtype
    assert Runtime(CPU, "fp16").grad_scaler().is_enabled()
    assert not Runtime(CPU, "bf16").grad_scaler().is_enabled()


@pytest.mark.parametrize("units, precision", [(None, "fp32"), ("AMX", "bf16")])
def test_runtime_from_the_pipeline_config_and_its_description(monkeypatch, units, precision):
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: units)
    rt = Runtime.of(load_config(["pipeline.device=cpu", "pipeline.compile=true"]).pipeline)
    assert (rt.device, rt.precision, rt.compile) == (CPU, precision, True)
    n = torch.get_num_threads()
    assert rt.describe() == (f"cpu ({n} thread{'s' if n > 1 else ''}, "
                             f"{units or 'no bf16 units'}), {precision}, compiled")


def test_asking_for_cuda_without_one_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="pipeline.device: 'cuda' was asked for"):
        devices.resolve_device("cuda")


@pytest.mark.parametrize("distributed, nproc, device, world", [
    ("false", 4, "cpu", 1),
    ("auto", 0, "cpu", 1),  # auto: only with two GPUs or more
    ("true", 0, "cpu", 2),
    ("true", 3, "cpu", 3),
])
def test_planned_world(distributed, nproc, device, world):
    cfg = defaults("pipeline", distributed=distributed, nproc=nproc, device=device)
    assert planned_world(cfg) == world


def test_more_processes_than_gpus_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert planned_world(defaults("pipeline", distributed="auto")) == 2  # one per GPU
    with pytest.raises(ConfigError, match="pipeline.nproc: 3 processes asked for, but only 2"):
        planned_world(defaults("pipeline", distributed="true", nproc=3))


def test_yaml_true_for_distributed_reads_as_the_choice(tmp_path):
    path = tmp_path / "run.yaml"
    save_config(load_config(), path)
    path.write_text(path.read_text().replace("distributed: auto", "distributed: true"))
    assert read_config(path).pipeline.distributed == "true"
    with pytest.raises(ConfigError, match="pipeline.distributed: expected one of auto, true, fals"):
        load_config(["pipeline.distributed=sometimes"])


def test_device_facts_read_nvml_when_installed(monkeypatch):
    class Memory:
        used = 3 * 2**30

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetMemoryInfo=lambda h: Memory,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40 + h))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert devices._nvml_readings(2) == {0: {"memory_used_gb": 3.0, "utilization_pct": 40},
                                         1: {"memory_used_gb": 3.0, "utilization_pct": 41}}
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert devices._nvml_readings(2) == {}
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: "AMX")
    facts = devices.device_facts()
    assert facts["torch"] == torch.__version__ and facts["cpu_threads"] >= 1
    assert facts["cpu_bf16"] == "AMX"


# ---------------------------------------------------------------- ranks' outcomes

def _outcomes(tmp_path, *outcomes):
    for rank, outcome in enumerate(outcomes):
        if outcome is not None:
            write_json(tmp_path / f"train_x.rank{rank}.json", outcome)


def test_all_ranks_done_is_done(tmp_path):
    _outcomes(tmp_path, {"status": "done"}, {"status": "done"})
    _raise_for_outcomes(tmp_path, "train_x", 2, 0, stopping=False)


def test_a_failed_rank_raises_its_own_error_class(tmp_path):
    _outcomes(tmp_path, {"status": "done"},
              {"status": "failed", "error": "train.csv: column 'a' row 3", "type": "DataError"})
    with pytest.raises(DataError, match=r"^rank 1: train.csv: column 'a' row 3$"):
        _raise_for_outcomes(tmp_path, "train_x", 2, 1, stopping=False)


def test_an_unexpected_exception_becomes_a_training_error(tmp_path):
    _outcomes(tmp_path, {"status": "failed", "error": "boom", "type": "KeyError"},
              {"status": "stopped"})
    with pytest.raises(TrainingError, match="^rank 0: boom$"):
        _raise_for_outcomes(tmp_path, "train_x", 2, 1, stopping=False)


def test_a_rank_that_died_silently_is_named_first(tmp_path):
    _outcomes(tmp_path, {"status": "failed", "error": "Connection closed by peer",
                         "type": "RuntimeError"}, None)
    with pytest.raises(TrainingError, match="rank 1 of 2 died without reporting"):
        _raise_for_outcomes(tmp_path, "train_x", 2, 1, stopping=False)


def test_stopped_ranks_mean_stopped_even_when_one_was_killed_by_the_stop(tmp_path):
    _outcomes(tmp_path, {"status": "stopped"}, None)
    with pytest.raises(StopRequested):
        _raise_for_outcomes(tmp_path, "train_x", 2, 1, stopping=True)


def test_a_nonzero_exit_with_every_rank_done_still_fails(tmp_path):
    _outcomes(tmp_path, {"status": "done"}, {"status": "done"})
    with pytest.raises(TrainingError, match="torchrun exited with code 1"):
        _raise_for_outcomes(tmp_path, "train_x", 2, 1, stopping=False)


def _recording_context(calls: list) -> types.SimpleNamespace:
    """A pipeline context whose metrics log, progress writer and logger record into calls."""
    def record(kind):
        return lambda *args, **fields: calls.append((kind, fields or args[-1]))
    return types.SimpleNamespace(
        metrics=types.SimpleNamespace(log=record("metrics"), rewind=record("rewind")),
        progress=types.SimpleNamespace(update_active=record("progress")),
        log=types.SimpleNamespace(info=record("text")))


def test_event_lines_are_applied_and_anything_else_is_logged_never_raised():
    calls = []
    ctx = _recording_context(calls)
    event = EVENT + '{"to": "metrics", "fields": {"step": 3, "loss": 0.5}}'
    _relay(ctx, event)
    # another process's output ran into the event's line (a full suite once failed a run so)
    _relay(ctx, event + "[rank1] warning")
    _relay(ctx, EVENT + '{"to": "progress", "fields": {"ep')  # cut short: not an event
    _relay(ctx, EVENT + '{"to": "rewind", "fields": {"stage": "s", "step": 1, "epoch": 0}}')
    _relay(ctx, "plain text")
    _relay(ctx, "   ")
    assert calls == [
        ("metrics", {"step": 3, "loss": 0.5}), ("metrics", {"step": 3, "loss": 0.5}),
        ("text", "[rank1] warning"), ("text", EVENT + '{"to": "progress", "fields": {"ep'),
        ("rewind", {"stage": "s", "step": 1, "epoch": 0}), ("text", "plain text")]
