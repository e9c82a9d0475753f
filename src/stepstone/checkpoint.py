"""Resumable training: every N optimizer steps, everything a run needs to continue exactly where it was.

A checkpoint is a folder `step-NNNNNNN` under the run's checkpoint folder (`RUNS_DIR/NAME.checkpoint`):

    tensors.safetensors   trainable weights (`param.*`), optimizer state (`optim.*`), the best epoch's
                          weights (`best.*`), RNG states (`rng.*`: torch CPU / CUDA, the batch-order generator)
    state.json            position (epoch, micro-batch, step), scheduler / loss-scaler / optimizer settings,
                          history and log so far, the run's resolved spec and its inputs (`Checkpoints.expect`)

It is written like every artifact (temporary folder, one rename), then older ones are deleted, so a kill
at any moment leaves the previous complete checkpoint (and at most hidden leftovers named after the
killed process, which the next run removes: `artifacts.remove_leftovers`). The data position is restored by replaying the
batch order from the seed (cheap: no forward passes), then checked against the saved generator state.
Never pickle: tensors go to safetensors, everything else to JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .artifacts import atomic_dir, remove_tree, to_json
from .errors import StepstoneError

SUFFIX = ".checkpoint"
STATE = "state.json"
TENSORS = "tensors.safetensors"
CHECKPOINT_VERSION = 1
RESUMABLE_CHANGES = ("threads", "checkpoint_every", "compile")  # train settings a resumed run may change
# What a run depends on beyond its spec, which names them but cannot tell whether they changed:
# members: zoo member -> its manifest's files (weights and configs) and their sha256; init_from: the same for the
# artifact it starts from (a zoo adapter it continues, or a full fine-tune run); data: task -> sha256 of its training and dev examples; backbone: fingerprint
INPUTS = ("members", "init_from", "data", "backbone")


@dataclass
class TrainState:
    """What the training loop needs to continue: see the module docstring."""

    step: int  # optimizer steps done
    epoch: int  # the epoch in progress (1-based)
    batch: int  # micro-batches of that epoch done
    params: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    scaler: dict
    rng: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)  # this epoch's losses so far
    history: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    processes: int = 1  # data-parallel processes that wrote it (rng holds "cpu.R" for ranks R > 0)


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state(), "batches": generator.get_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: dict[str, torch.Tensor], rank: int = 0) -> None:
    torch.set_rng_state(state["cpu" if rank == 0 else f"cpu.{rank}"])
    cuda = [state[k] for k in sorted(k for k in state if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


class Checkpoints:
    """The checkpoint folder of one run. `every` = optimizer steps between checkpoints (0 = none);
    `spec` = the run's resolved spec as a dict: a checkpoint only resumes the run that wrote it."""

    def __init__(self, folder: Path, every: int, spec: dict):
        # compared with the JSON the checkpoint holds: the same round trip (tuples become lists); settings
        # that do not change what is computed may differ on resume
        spec = json.loads(json.dumps(spec))
        for key in RESUMABLE_CHANGES:
            spec.get("train", {}).pop(key, None)
        self.folder, self.every, self.spec = Path(folder), every, spec
        self.inputs: dict[str, Any] = {}

    def expect(self, key: str, value: Any, resume: bool) -> None:
        """Record an input the spec names but does not hold (INPUTS: the zoo members' weights, the init_from
        artifact's, the data, the backbone); resuming, refuse a checkpoint written with a different one."""
        self.inputs[key] = json.loads(json.dumps(value))
        latest = self.latest() if resume else None
        if latest is not None:
            self._record(latest)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def latest(self) -> Path | None:
        steps = sorted(p for p in self.folder.glob("step-*") if (p / STATE).is_file()) if self.folder.is_dir() else []
        return steps[-1] if steps else None

    def describe_latest(self) -> str:
        latest = self.latest()
        if latest is None:
            return "no checkpoint was written" + ("" if self.every else " (train.checkpoint_every=0)")
        return f"the last good checkpoint ({latest.name}) is kept in {self.folder}"

    def check(self, resume: bool) -> None:
        """Before any work: refuse to start over an existing checkpoint without `resume`, to resume with
        nothing to resume from, or to resume a checkpoint another configuration wrote."""
        latest = self.latest()
        if latest is None:
            if resume:
                raise StepstoneError(f"nothing to resume: no checkpoint in {self.folder}")
            return
        if not resume:
            raise StepstoneError(f"{self.folder} holds a checkpoint of an unfinished run ({latest.name}): "
                                 f"pass --resume to continue it, or remove the folder to start over")
        self._record(latest)

    def _record(self, latest: Path) -> dict:
        try:
            record = json.loads((latest / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StepstoneError(f"{latest / STATE}: unreadable checkpoint ({err})") from None
        if not isinstance(record, dict) or record.get("checkpoint_version") != CHECKPOINT_VERSION:
            version = record.get("checkpoint_version") if isinstance(record, dict) else None
            raise StepstoneError(f"{latest / STATE}: checkpoint version {version!r}, "
                                 f"this stepstone reads {CHECKPOINT_VERSION}")
        if record.get("spec") != self.spec:
            raise StepstoneError(f"{self.folder} was written by a different configuration "
                                 f"({first_difference(record.get('spec'), self.spec)}): resume with the same "
                                 f"settings, or remove the folder to start over")
        saved = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}  # none: an older checkpoint
        for key in INPUTS:
            if key in saved and key in self.inputs and saved[key] != self.inputs[key]:
                raise StepstoneError(f"{self.folder} was written with other inputs: "
                                     f"{changed_input(key, saved[key], self.inputs[key])} since; resume needs the "
                                     f"same ones: put them back, or remove the folder to start over")
        return record

    def save(self, state: TrainState) -> Path:
        from safetensors.torch import save_file

        tensors = {f"param.{n}": t for n, t in state.params.items()}
        tensors.update({f"rng.{k}": t for k, t in state.rng.items()})
        if state.best_state is not None:
            tensors.update({f"best.{n}": t for n, t in state.best_state.items()})
        optim_state = {}
        for index, values in state.optimizer["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{index}.{key}"] = value
                else:
                    optim_state.setdefault(str(index), {})[key] = value
        record = {
            "checkpoint_version": CHECKPOINT_VERSION, "spec": self.spec, "inputs": self.inputs,
            "step": state.step, "epoch": state.epoch,
            "batch": state.batch, "optimizer": {"param_groups": state.optimizer["param_groups"], "other": optim_state},
            "scheduler": state.scheduler, "scaler": state.scaler, "losses": state.losses, "history": state.history,
            "log": state.log, "best_epoch": state.best_epoch, "best_value": state.best_value, "seconds": state.seconds,
            "processes": state.processes,
        }
        final = self.folder / f"step-{state.step:07d}"
        with atomic_dir(final) as tmp:
            save_file({k: t.detach().contiguous().cpu().clone() for k, t in tensors.items()}, str(tmp / TENSORS))
            (tmp / STATE).write_text(to_json(record), encoding="utf-8")
        for old in self.folder.glob("step-*"):
            if old != final:
                remove_tree(old)
        return final

    def load(self, processes: int = 1) -> TrainState:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        latest = self.latest()
        if latest is None:
            raise StepstoneError(f"nothing to resume: no checkpoint in {self.folder}")
        record = self._record(latest)
        if record.get("processes", 1) != processes:
            raise StepstoneError(f"{latest} was written by {record.get('processes', 1)} training process(es): resume "
                                 f"it with as many (this run has {processes})")
        try:
            tensors = load_file(str(latest / TENSORS))
        except (OSError, SafetensorError) as err:
            raise StepstoneError(f"{latest / TENSORS}: unreadable checkpoint weights ({err})") from None

        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}

        state: dict[int, dict] = {int(i): dict(v) for i, v in record["optimizer"]["other"].items()}
        for key, value in group("optim.").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        best = group("best.")
        return TrainState(
            step=record["step"], epoch=record["epoch"], batch=record["batch"], params=group("param."),
            optimizer={"state": state, "param_groups": record["optimizer"]["param_groups"]},
            scheduler=record["scheduler"], scaler=record["scaler"], rng=group("rng."), losses=record["losses"],
            history=record["history"], log=record["log"], best_epoch=record["best_epoch"],
            best_value=record["best_value"], best_state=best or None, seconds=record["seconds"],
            processes=record.get("processes", 1))

    def clear(self) -> None:
        """Remove the folder once the run's artifact is saved."""
        if self.folder.is_dir():
            remove_tree(self.folder)


def changed_input(key: str, saved: Any, current: Any) -> str:
    """What changed in one of INPUTS, as a phrase: "zoo member 'a' changed (adapter.safetensors: sha256
    0123456789ab -> ba9876543210)"."""
    def differing(old: dict, new: dict) -> str:
        return next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "?")

    if key in ("members", "init_from"):
        if key == "members":
            member = differing(saved, current)
            what, old, new = f"zoo member '{member}'", saved.get(member), current.get(member)
        else:
            what, old, new = f"init_from '{(current or saved or {}).get('path')}'", saved, current
        old, new = (old or {}).get("files", {}), (new or {}).get("files", {})
        name = differing(old, new)
        return f"{what} changed ({name}: sha256 {(old.get(name) or 'none')[:12]} -> {(new.get(name) or 'none')[:12]})"
    if key == "data":
        return f"the examples of task '{differing(saved, current)}' changed (a data file was edited or replaced)"
    return f"the backbone changed (fingerprint {saved} -> {current})"


def first_difference(saved: Any, current: Any, path: str = "") -> str:
    """'train.lr: 0.001 -> 0.0003' for the first setting that differs between two spec dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if saved.get(key) != current.get(key):
                return first_difference(saved.get(key), current.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'spec'}: {saved!r} -> {current!r}"
