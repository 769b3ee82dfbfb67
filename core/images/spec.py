"""The image stream (Swin MAE) as the pipeline and the console see it (`core.streams`).
No torch here: the functions are named, and imported when used."""
from core.images.config import SwinMAEConfig
from core.streams import TRAIN_FIELDS, DataOption, FormField, Stream, stages_of

SPEC = Stream(
    name="swinmae", kind="images", title="Images (Swin MAE)",
    data=(DataOption("img_data", "image dataset: an MVTec-style folder (train/good, "
                     "test/<type>, ground_truth/<type>), a zip of one, or a folder of images",
                     "an image folder or zip (its test/ images, else all)"),),
    config=SwinMAEConfig,
    module="core.images.stages",
    load_dataset="core.images.data:load_image_dataset",
    summarize="core.images.data:summarize_images",
    stages=stages_of("swinmae", "core.images.stages", ("train", "train_head", "score", "evaluate")),
    scoring_stages=stages_of("swinmae", "core.images.scoring_run", ("score", "evaluate")),
    check_outputs="core.images.checks:check_outputs",
    scoring="core.images.scoring_run",
    exporter="core.images.export",
    results_view="pages.views.images:section",
    headline={"image_auroc": "image AUROC", "image_auprc": "image AUPRC",
              "pixel_auroc": "pixel AUROC", "f1": "F1 at threshold"},
    key_params=(("train", "epochs"), ("train", "batch_size"), ("train", "lr"),
                ("model", "image_size"), ("model", "mask_ratio"), ("score", "method"),
                ("score", "mode")),
    form_fields=TRAIN_FIELDS + (
        FormField("model.image_size", "Image size (px)"),
        FormField("model.mask_ratio", "Mask ratio"),
    ),
    preselected=False,  # minutes of CPU time even on the sample: opt in
)
