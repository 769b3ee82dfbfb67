"""The toy stream's registration: all the rest of the project learns about it from here."""
from pathlib import Path

from pydantic import Field

from core.config import Section
from core.streams import DataOption, FormField, Stage, Stream


class ToyTrain(Section):
    epochs: int = Field(ge=1, description="passes over the values")


class ToyScore(Section):
    threshold: float = Field(gt=0.0)


class ToyConfig(Section):
    preset: str
    train: ToyTrain
    score: ToyScore


SPEC = Stream(
    name="toy", kind="levels", title="Levels (toy)",
    data=(DataOption("toy_data", "a folder holding values.txt (one number per line) and "
                     "optional labels.txt"),),  # no score_help: `score` does not take it
    config=ToyConfig,
    module="tests.toy_stream.stages",
    load_dataset="tests.toy_stream.data:load_levels",
    summarize="tests.toy_stream.data:summarize",
    stages=(Stage("train_toy", "tests.toy_stream.stages:train", "toy"),
            Stage("score_toy", "tests.toy_stream.stages:score", "toy")),
    scoring_stages=(),  # no scoring runs: a toy run keeps no model a scoring run could load
    check_outputs="tests.toy_stream.stages:check_outputs",
    scoring="",
    exporter="",
    results_view="tests.toy_stream.view:section",
    headline={"hit_rate": "hit rate"},
    key_params=(("train", "epochs"), ("score", "threshold")),
    form_fields=(FormField("train.epochs", "Epochs"),
                 FormField("score.threshold", "Threshold (std)")),
    preselected=False,
    config_file=Path(__file__).with_name("toy.yaml"),
)
