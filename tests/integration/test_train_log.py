"""Every run logs loss and learning rate per step and dev metrics per epoch to train_log.jsonl."""
from __future__ import annotations

import json

import pytest

from stepstone import pipelines
from stepstone.errors import StepstoneError
from stepstone.specs import RunSpec, TrainSpec
from stepstone.zoo import Zoo


def test_train_log_has_every_step_and_dev_evaluation(tmp_path):
    spec = RunSpec(task="toy-sentiment", name="logged",
                   train=TrainSpec(lr=1e-3, epochs=2, batch_size=16, max_train_examples=48, max_eval_examples=16,
                                   warmup_ratio=0.0))
    outcome = pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"))
    records = [json.loads(line) for line in (outcome.path / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    devs = [r for r in records if r["kind"] == "dev"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in steps] == [1, 1, 1, 2, 2, 2]
    # linear decay from 1e-3 to 0 over 6 steps, no warm-up: after step k the rate is 1e-3 * (6 - k) / 6
    assert [r["lr"] for r in steps] == pytest.approx([1e-3 * (6 - k) / 6 for k in range(1, 7)])
    assert all(r["tasks"] == ["toy-sentiment"] and r["loss"] > 0 for r in steps)
    assert [(r["step"], r["dev"]["toy-sentiment"]) for r in devs] == [
        (h["step"], h["dev"]) for h in outcome.manifest["history"]]
    assert outcome.manifest["peak_rss_mb"] > 100 and outcome.manifest["weights_bytes"] == sum(
        p.stat().st_size for p in outcome.path.glob("*.safetensors"))


def test_tensorboard_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    from accelerate import tracking as accelerate_tracking

    monkeypatch.setattr(accelerate_tracking, "_available_trackers", [])  # as if tensorboard were not installed
    spec = RunSpec(task="toy-sentiment", name="tb", train=TrainSpec(epochs=1, max_train_examples=16))
    with pytest.raises(StepstoneError, match=r"--log tensorboard needs the tensorboard package"):
        pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"), runs_dir=tmp_path / "runs", tensorboard=True)
    assert not (tmp_path / "zoo").exists() and not (tmp_path / "runs").exists()


def test_training_without_english_dev_data(tmp_path):
    with pytest.raises(ValueError, match="select_best needs dev data"):
        TrainSpec(dev=False)
    spec = RunSpec(task="toy-qa", name="nodev",
                   train=TrainSpec(epochs=1, batch_size=16, max_train_examples=32, dev=False, select_best=False))
    outcome = pipelines.train_run(spec, zoo=Zoo(tmp_path / "zoo"))
    assert outcome.manifest["metrics"]["dev"] == {} and outcome.manifest["data"]["dev_examples"] == 0
    assert [h for h in outcome.manifest["history"] if "dev" in h] == []
    assert [json.loads(line)["kind"] for line in (outcome.path / "train_log.jsonl").read_text().splitlines()] == [
        "step", "step"]
