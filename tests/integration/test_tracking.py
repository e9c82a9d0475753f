"""Experiment tracking through accelerate's tracker API (stepstone.tracking): `--log` choices, the one-line
error for a tracker whose package is missing, what each tracker is given, and a tiny run logged through a
fake tracker registered in accelerate's tracker table the way `register_tracker_class` registers one
(nothing here touches the network: W&B and MLflow are not installed, and the fakes replace them)."""
from __future__ import annotations

import importlib.util
import json

import pytest
from accelerate import tracking as accelerate_tracking
from accelerate.tracking import GeneralTracker
from accelerate.utils import LoggerType

from stepstone import pipelines, tracking
from stepstone.errors import StepstoneError
from stepstone.specs import RunSpec, TrainSpec
from stepstone.tracking import Tracker
from stepstone.zoo import Zoo

ALL = [LoggerType.TENSORBOARD, LoggerType.WANDB, LoggerType.MLFLOW]


def fake(tracker_name: str, needs_dir: bool):
    """A GeneralTracker that records every call in `calls`."""

    class Fake(GeneralTracker):
        name = tracker_name
        requires_logging_directory = needs_dir
        calls: list = []

        def __init__(self, *args, **kwargs):
            super().__init__()
            Fake.calls.append(("init", args, kwargs))

        @property
        def tracker(self):
            return self

        def start(self):
            Fake.calls.append(("start",))

        def store_init_configuration(self, values):
            Fake.calls.append(("config", values))

        def log(self, values, step=None, **kwargs):
            Fake.calls.append(("log", values, step))

        def finish(self):
            Fake.calls.append(("finish",))

    return Fake


@pytest.fixture
def installed(monkeypatch):
    """Fake tensorboard / wandb / mlflow trackers, all 'installed'."""
    fakes = {"tensorboard": fake("tensorboard", True), "wandb": fake("wandb", False), "mlflow": fake("mlflow", False)}
    for name, cls in fakes.items():
        monkeypatch.setitem(accelerate_tracking.LOGGER_TYPE_TO_CLASS, name, cls)
    monkeypatch.setattr(accelerate_tracking, "_available_trackers", list(ALL))
    for variable in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    return fakes


def test_log_choices_parse_in_order_once_each():
    assert [t.value for t in Tracker] == ["tensorboard", "wandb", "mlflow"]
    assert tracking.parse(["wandb", "tensorboard, mlflow", "wandb", ""]) == (Tracker.WANDB, Tracker.TENSORBOARD,
                                                                           Tracker.MLFLOW)
    assert tracking.parse([Tracker.MLFLOW, "mlflow"]) == (Tracker.MLFLOW,)
    assert tracking.parse([]) == ()
    with pytest.raises(StepstoneError) as err:
        tracking.parse(["tensorboard,comet"])
    assert str(err.value) == ("unknown --log 'comet' (valid: tensorboard, wandb, mlflow; "
                              "train_log.jsonl is always written)")


def test_a_missing_tracker_package_is_one_error_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(accelerate_tracking, "_available_trackers", [LoggerType.WANDB])
    with pytest.raises(StepstoneError) as err:
        tracking.check(list(Tracker))
    assert str(err.value) == ("--log tensorboard needs the tensorboard package (pip install tensorboard); "
                              "--log mlflow needs the mlflow package (pip install mlflow)")
    tracking.check([Tracker.WANDB])
    tracking.check([])


def test_trackers_get_the_run_offline_by_default(installed, tmp_path, monkeypatch):
    settings = {"task": ["toy-tags"], "train": {"lr": 0.001, "seed": 0}, "compose": None, "train_splits": {}}
    with tracking.open_trackers(list(Tracker), "run-a", tmp_path, settings) as sink:
        sink({"kind": "step", "step": 1, "epoch": 1, "lr": 0.5, "loss": 2.0, "tasks": ["toy-tags"]})
        sink({"kind": "dev", "step": 1, "epoch": 1, "dev": {"toy-tags": {"f1": 10.0, "precision": 20.0}}})
    config = {"task": '["toy-tags"]', "train.lr": 0.001, "train.seed": 0, "compose": None, "train_splits": "{}"}
    logged = [("log", {"train/loss": 2.0, "train/lr": 0.5}, 1),
              ("log", {"dev/toy-tags/f1": 10.0, "dev/toy-tags/precision": 20.0}, 1)]
    assert installed["tensorboard"].calls == [
        ("init", ("run-a", str(tmp_path / "tensorboard")), {}), ("start",), ("config", config), *logged, ("finish",)]
    assert installed["wandb"].calls == [
        ("init", ("stepstone",), {"name": "run-a", "mode": "offline", "dir": str(tmp_path / "wandb")}),
        ("start",), ("config", config), *logged, ("finish",)]
    assert (tmp_path / "wandb").is_dir()
    from accelerate.logging import get_logger

    get_logger("accelerate.tracking").debug("the trackers' own logging works (W&B's start logs without a state)")
    assert installed["mlflow"].calls == [("init", ("stepstone",), {"run_name": "run-a"}), ("start",),
                                         ("config", config), *logged, ("finish",)]
    # what the user configured wins: W&B's mode, folder and project
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    installed["wandb"].calls.clear()
    with tracking.open_trackers([Tracker.WANDB], "run-b", tmp_path, {}):
        pass
    assert installed["wandb"].calls == [("init", ("mine",), {"name": "run-b"}), ("start",), ("config", {}),
                                        ("finish",)]


def test_trackers_finish_after_an_error(installed, tmp_path):
    with pytest.raises(RuntimeError):
        with tracking.open_trackers([Tracker.TENSORBOARD], "run", tmp_path, {}):
            raise RuntimeError("diverged")
    assert installed["tensorboard"].calls[-1] == ("finish",)


def test_a_run_logs_every_train_log_record_to_its_trackers(installed, tmp_path):
    spec = RunSpec(task="toy-sentiment", name="tracked",
                   train=TrainSpec(lr=1e-3, epochs=2, batch_size=16, max_train_examples=32, max_eval_examples=16))
    outcome = pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs",
                                  log=["tensorboard", "mlflow"])
    records = [json.loads(line) for line in (outcome.path / "train_log.jsonl").read_text().splitlines()]
    expected = [("log", tracking.values_of(r), r["step"]) for r in records]
    assert [r["kind"] for r in records] == ["step", "step", "dev", "step", "step", "dev"]
    for name in ("tensorboard", "mlflow"):
        calls = installed[name].calls
        assert [c[0] for c in calls] == ["init", "start", "config", *["log"] * len(records), "finish"]
        assert calls[3:-1] == expected
        config = calls[2][1]
        assert config["name"] == "tracked" and config["train.lr"] == 1e-3 and config["train.epochs"] == 2
    assert installed["tensorboard"].calls[0][1] == ("tracked", str(tmp_path / "runs" / "tensorboard"))
    assert installed["wandb"].calls == []
    # tensorboard=True (the older keyword) is --log tensorboard
    installed["tensorboard"].calls.clear()
    pipelines.train_run(RunSpec(task="toy-sentiment", name="tracked-2", train=spec.train),
                        zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs", tensorboard=True)
    assert installed["tensorboard"].calls[0][1] == ("tracked-2", str(tmp_path / "runs" / "tensorboard"))


def test_a_missing_tracker_fails_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setattr(accelerate_tracking, "_available_trackers", [])
    spec = RunSpec(task="toy-sentiment", name="t", train=TrainSpec(epochs=1, max_train_examples=16))
    with pytest.raises(StepstoneError, match=r"^--log wandb needs the wandb package \(pip install wandb\)$"):
        pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs", log=["wandb"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_real_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = RunSpec(task="toy-sentiment", name="tb",
                   train=TrainSpec(lr=1e-3, epochs=1, batch_size=16, max_train_examples=32, max_eval_examples=16))
    pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs", log=["tensorboard"])
    events = EventAccumulator(str(tmp_path / "runs" / "tensorboard" / "tb"))
    events.Reload()
    assert {"train/loss", "train/lr", "dev/toy-sentiment/accuracy"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
