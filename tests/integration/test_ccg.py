"""CCG supertagging: AUTO files read, the label set comes from the training data and travels in the manifest."""
from __future__ import annotations

from pathlib import Path

import pytest

from stepstone import pipelines
from stepstone.data.readers import read_ccg_auto
from stepstone.errors import StepstoneError
from stepstone.specs import RunSpec, TrainSpec
from stepstone.zoo import Zoo

DERIVATIONS = [
    "(<T S[dcl] 0 2> (<T NP 0 2> (<L NP/N DT DT the NP_1/N_1>) (<L N NN NN cat N>) ) "
    "(<L S[dcl]\\NP VBZ VBZ sleeps S[dcl]\\NP_2>) )",
    "(<T S[dcl] 0 2> (<L NP NNP NNP alice NP>) (<L S[dcl]\\NP VBZ VBZ runs S[dcl]\\NP_3>) )",
]
RARE = "(<T S[dcl] 0 2> (<L NP NNP NNP bob NP>) (<L (S[dcl]\\NP)/NP VBZ VBZ sees (S[dcl]\\NP_4)/NP_5>) )"


def auto(path: Path, trees: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"ID=wsj_0001.{i} PARSER=GOLD NUMPARSE=1\n{t}\n" for i, t in enumerate(trees, 1)))
    return path


def test_read_ccg_auto(tmp_path):
    examples = read_ccg_auto(auto(tmp_path / "a.auto", DERIVATIONS))
    assert examples == [{"tokens": ["the", "cat", "sleeps"], "tags": ["NP/N", "N", "S[dcl]\\NP"]},
                        {"tokens": ["alice", "runs"], "tags": ["NP", "S[dcl]\\NP"]}]
    bad = tmp_path / "bad.auto"
    bad.write_text("ID=wsj_0001.1 PARSER=GOLD\n(<T S 0 2> no leaves here)\n")
    with pytest.raises(StepstoneError, match=r"bad.auto:2: not a CCGbank AUTO derivation"):
        read_ccg_auto(bad)
    bad.write_text("ID=wsj_0001.1 PARSER=GOLD\nID=wsj_0001.2 PARSER=GOLD\n" + DERIVATIONS[0] + "\n")
    with pytest.raises(StepstoneError, match=r"bad.auto:1: header without a derivation"):
        read_ccg_auto(bad)


def test_ccg_label_set_comes_from_training_data(tmp_path):
    data = tmp_path / "data"
    auto(data / "intermediate" / "ccg" / "train.auto", DERIVATIONS * 10 + [RARE])
    auto(data / "intermediate" / "ccg" / "dev.auto", DERIVATIONS + [RARE])
    zoo = Zoo(tmp_path / "zoo")
    outcome = pipelines.train_run(RunSpec(task="ccg", name="ccg", data_dir=data,
                                          train=TrainSpec(lr=5e-3, epochs=1, batch_size=8)), zoo=zoo)
    # seen >= 10 times, most frequent first (S[dcl]\NP 20, NP 11, then N and NP/N 10 each, by name);
    # "(S[dcl]\NP)/NP", seen once, becomes "<other>"
    assert outcome.manifest["task"]["labels"] == ["S[dcl]\\NP", "NP", "N", "NP/N", "<other>"]
    again = pipelines.evaluate("ccg", zoo=zoo, split="validation", langs=["en"])
    assert again.scores["en"] == outcome.manifest["metrics"]["dev"]
