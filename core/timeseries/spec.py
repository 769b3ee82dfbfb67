"""The time-series stream (PatchTST) as the pipeline and the console see it (`core.streams`).
No torch here: the functions are named, and imported when used."""
from core.streams import TRAIN_FIELDS, DataOption, FormField, Stream, stages_of
from core.timeseries.config import PatchTSTConfig

SPEC = Stream(
    name="patchtst", kind="timeseries", title="Time series (PatchTST)",
    data=(DataOption("ts_data", "time-series dataset: a folder or one CSV file",
                     "a CSV file, or a folder (its test.csv, else train.csv)"),
          DataOption("ts_test", "a test CSV (overrides the folder's test.csv)")),
    config=PatchTSTConfig,
    module="core.timeseries.stages",
    load_dataset="core.timeseries.data:load_ts_dataset",
    summarize="core.timeseries.data:summarize",
    stages=stages_of("patchtst", "core.timeseries.stages"),
    scoring_stages=stages_of("patchtst", "core.timeseries.scoring_run", ("score", "evaluate")),
    check_outputs="core.timeseries.checks:check_outputs",
    scoring="core.timeseries.scoring_run",
    exporter="core.timeseries.export",
    results_view="pages.views.timeseries:section",
    headline={"auroc": "AUROC", "auprc": "AUPRC", "best_f1": "best F1",
              "f1": "F1 at threshold", "pa_f1": "PA-F1 (point-adjusted)"},
    key_params=(("train", "epochs"), ("train", "batch_size"), ("train", "lr"),
                ("data", "window"), ("model", "patch_len"), ("model", "mask_ratio"),
                ("score", "mode")),
    form_fields=TRAIN_FIELDS + (
        FormField("data.window", "Window (time steps)"),
        FormField("model.patch_len", "Patch length (time steps)"),
        FormField("model.mask_ratio", "Mask ratio"),
    ),
    # bf16 autocast made training slower on an AVX-512 BF16 CPU (machine-1-2 default run: 49 s
    # against fp32's 38 s, the same AUPRC; peer_patchtst.py: 47 vs 53 windows/s): its GEMMs
    # (d_model 128 over 6-10 patches) are too small to gain, the casts cost more
    cpu_bf16=False,
    preselected=True,
)
