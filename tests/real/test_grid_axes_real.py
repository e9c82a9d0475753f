"""Issue 16's grid axes on multilingual-e5-small with ../shared data: a sequential chain (SST-2 then ANLI), a sized
SST-2 adapter, several backbones, and a size larger than the data refused."""
from __future__ import annotations

import json

import pytest

from stepstone.errors import ConfigError
from stepstone.experiments import CELLS, load_grid, load_records, run_grid

pytestmark = pytest.mark.real

TRAIN = "train: {max_train_examples: 32, max_eval_examples: 16, max_length: 48, lr: 5.0e-3, threads: 1}\n"


def write(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_a_chain_and_a_sized_adapter_on_real_data(e5_backbone, shared_data, tmp_path):
    path = write(tmp_path, f"""\
preset: cpu-small
backbone: {{name: {e5_backbone}}}
data_dir: {shared_data}
intermediate: [sst2]
sequential: [[sst2, anli]]
intermediate_splits: {{anli: validation}}
intermediate_sizes: {{sst2: [16]}}
{TRAIN}eval_examples: 16
methods: [bottleneck]
setups: [none, stack]
seeds: [0]
full_finetune: false
targets:
  - {{task: udpos, split: test, langs: [en, es]}}
""")
    result = run_grid(load_grid(path), tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == [] and len(records) == 7
    zoo = tmp_path / "g" / "zoo"
    chained = json.loads((zoo / "bottleneck-sst2-then-anli" / "manifest.json").read_text())
    assert chained["chain"] == ["sst2", "anli"] and chained["init_from"]["name"] == "bottleneck-sst2"
    sized = json.loads((zoo / "bottleneck-sst2-n16" / "manifest.json").read_text())
    assert sized["data"]["train_examples"] == 16
    for cell in ("sequential-sst2-then-anli", "stack-size-sst2-n16"):
        record = records[f"target/udpos/bottleneck/{cell}/seed0"]
        assert record["status"] == "ok" and sorted(record["scores"]) == ["en", "es"]
        assert record["metric"] == "f1" and set(record["secondary"]) >= {"accuracy"}
        assert record["backbone"] == str(e5_backbone)


def test_two_backbones_and_a_size_beyond_the_data(e5_backbone, shared_data, tmp_path):
    text = f"""\
preset: cpu-small
backbones: [{{name: tiny}}, {{name: {e5_backbone}}}]
data_dir: {shared_data}
intermediate: [copa]
{TRAIN}eval_examples: 16
methods: [bottleneck]
setups: [none]
seeds: [0]
full_finetune: false
targets:
  - {{task: panx, split: validation, langs: [en, de]}}
"""
    result = run_grid(load_grid(write(tmp_path, text)), tmp_path / "g", isolate=False)
    records = load_records(tmp_path / "g" / CELLS)
    assert result.failed == []
    assert sorted(records) == ["multilingual-e5-small/target/panx/bottleneck/none/seed0",
                               "tiny/target/panx/bottleneck/none/seed0"]
    assert {r["backbone"] for r in records.values()} == {"tiny", str(e5_backbone)}
    with pytest.raises(ConfigError, match=r"grid.yaml:\d+: intermediate_sizes: 1000 examples of 'copa' asked for, "
                                          r"but its train data has 400"):
        load_grid(write(tmp_path, text.replace("setups: [none]", "setups: [none]\nintermediate_sizes: [100, 1000]")))


def test_the_committed_axes_grid_loads_on_the_shared_data(shared_data):
    from pathlib import Path

    from stepstone.experiments import cells

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "grids" / "axes-cpu-small.yaml"
    grid = load_grid(path, (f"data_dir={shared_data}",))
    ids = [c.id for c in cells(grid)]
    assert "intermediate/bottleneck/anli-then-sst2" in ids and "intermediate/bottleneck/sst2-n100" in ids
    assert "target/panx/bottleneck/sequential-sst2-then-anli/seed0" in ids
    assert "target/udpos/bottleneck/stack-size-sst2-n250/seed0" in ids
    assert grid.perturb == ("typo:0.05", "dropout:0.1")
