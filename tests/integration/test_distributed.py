"""`stepstone train` under `accelerate launch` with 2 CPU processes (gloo): the same adapter as one process
with the same global batch, one zoo entry written by rank 0, one report printed."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stepstone.backbone import load_backbone
from stepstone.specs import BackboneSpec
from stepstone_cli.main import app

ACCELERATE = Path(sys.executable).with_name("accelerate")
SETTINGS = ["train.epochs=2", "train.batch_size=8", "train.max_train_examples=40", "train.max_eval_examples=24",
            "train.lr=5e-3", "train.threads=1", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """The tiny backbone as a local folder, dropout off: dropout masks are random per process, so with
    them the two runs could not be compared."""
    folder = tmp_path_factory.mktemp("backbone") / "tiny-nodrop"
    loaded = load_backbone(BackboneSpec("tiny"))
    loaded.model.config.hidden_dropout_prob = loaded.model.config.attention_probs_dropout_prob = 0.0
    loaded.model.save_pretrained(str(folder))
    loaded.tokenizer.save_pretrained(str(folder))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str) -> subprocess.CompletedProcess:
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "stepstone_cli.main", *args]
    env = {**os.environ, "STEPSTONE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.skipif(not ACCELERATE.is_file(), reason="accelerate's launcher is not installed next to python")
@pytest.mark.parametrize("task", ["toy-tags", "toy-sentiment"])  # loss over labelled tokens / over examples
def test_two_processes_train_the_adapter_one_process_trains(tmp_path, backbone, task):
    from typer.testing import CliRunner

    common = ["train", "--task", task, "--backbone", str(backbone), "--name", "a", "-q", *SETTINGS]
    single = CliRunner().invoke(app, [*common, "--zoo", str(tmp_path / "one"), "--runs-dir", str(tmp_path / "runs-one")])
    assert single.exit_code == 0, single.output
    ddp = launch(*common, "--zoo", str(tmp_path / "two"), "--runs-dir", str(tmp_path / "runs-two"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("saved adapter: ") == 1  # only rank 0 reports
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["a"]  # written once, nothing half-written
    assert not (tmp_path / "runs-two").exists() or not any((tmp_path / "runs-two").iterdir())  # checkpoints removed

    one, two = tmp_path / "one" / "a", tmp_path / "two" / "a"
    files = sorted(p.name for p in one.glob("*.safetensors"))
    assert files == sorted(p.name for p in two.glob("*.safetensors")) and files
    for name in files:
        a, b = load_file(str(one / name)), load_file(str(two / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{name}:{key}")
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (one, two))
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m2["data"] == m1["data"] and m2["history"][-1]["step"] == m1["history"][-1]["step"] == 10
    for h1, h2 in zip(m1["history"], m2["history"]):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4)  # the whole batch's loss, gathered
        assert h2["dev"] == pytest.approx(h1["dev"], abs=1e-6)  # dev metrics gathered from both shards
