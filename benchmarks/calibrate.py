"""Calibration sweep of the adapter learning rate per task family (issue 13): short runs, one per task x lr.

    python benchmarks/calibrate.py --backbone ~/.cache/stepstone/multilingual-e5-small --data-dir ../shared/data \\
        --out benchmarks/results/calibration-e5-small.json

Each run is `stepstone train` (bottleneck adapter, the library's own loop) on the first N English examples of
one task of a family, then its English dev score and the training loss at both ends of the curve
(stepstone.health: mean of the first / last steps), with the run's `learning` verdict. The dev score is the one
the verdict judged (`learning.metric`: the main metric, UD-POS's token accuracy). Writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

# family -> (task, train split, examples, epochs, max_length, dev): the task that stands for the family here
PLAN = {
    "sentence classification": ("sst2", "train", 1000, 2, 64, True),
    "pair classification": ("xnli", "validation", 1000, 2, 96, True),  # English XNLI dev: front trains, end is dev
    "multiple choice": ("copa", "train", 400, 2, 64, True),  # all of COPA's train split
    "qa": ("tydiqa", "train", 500, 1, 96, False),  # TyDiQA's dev answers are blank here: loss only
    "tagging": ("udpos", "train", 500, 1, 96, True),
}


def run(family: str, lr: float, args: argparse.Namespace, root: Path) -> dict:
    from stepstone import pipelines
    from stepstone.specs import BackboneSpec, RunSpec, TrainSpec
    from stepstone.zoo import Zoo

    task, split, examples, epochs, length, dev = PLAN[family]
    if args.examples:
        examples = min(examples, args.examples)
    train = TrainSpec(lr=lr, epochs=epochs, batch_size=16, max_length=length, doc_stride=32,
                      max_train_examples=examples, max_eval_examples=args.eval_examples, threads=args.threads,
                      dev=dev, select_best=False, checkpoint_every=0)
    name = f"{task}-{lr:g}".replace(".", "_").replace("-", "_")
    spec = RunSpec(task=task, name=name, backbone=BackboneSpec(args.backbone), train=train, train_split=split,
                   data_dir=args.data_dir)
    start = time.monotonic()
    outcome = pipelines.train_run(spec, zoo=Zoo(root / "zoo"), runs_dir=root / "runs")
    manifest = outcome.manifest
    learning = manifest["learning"]
    metric = learning["metric"]  # what the verdict held against chance and the majority: UD-POS's token accuracy
    return {"family": family, "task": task, "lr": lr, "train_examples": manifest["data"]["train_examples"],
            "train_features": manifest["data"]["train_features"], "dev_examples": manifest["data"]["dev_examples"],
            "epochs": epochs, "max_length": length, "steps": outcome.result.steps, "metric": metric,
            "dev": manifest["metrics"]["dev"].get(metric), "loss_start": learning["loss_start"],
            "loss_end": learning["loss_end"], "prior_loss": learning["prior_loss"], "chance": learning["chance"],
            "majority": learning["majority"], "margin": learning["margin"], "verdict": learning["verdict"],
            "reason": learning["reason"],
            "seconds": round(time.monotonic() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--families", default=",".join(PLAN), help=f"comma-separated, of: {', '.join(PLAN)}")
    parser.add_argument("--lrs", default="1e-3,5e-3")
    parser.add_argument("--examples", type=int, default=None, help="cap every family's training examples")
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in PLAN]
    if unknown:
        sys.exit(f"error: unknown family {', '.join(unknown)} (valid: {', '.join(PLAN)})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            for lr in (float(x) for x in args.lrs.split(",")):
                row = run(family, lr, args, Path(tmp))
                rows.append(row)
                dev = "–" if row["dev"] is None else f"{row['dev']:.1f}"
                print(f"{family:24} {row['task']:7} lr {lr:g}: dev {row['metric']} {dev}, loss "
                      f"{row['loss_start']:.3f} -> {row['loss_end']:.3f}, {row['verdict']} ({row['seconds']:.0f}s)",
                      flush=True)
    report = {"backbone": args.backbone, "method": "bottleneck", "batch_size": 16, "threads": args.threads,
              "eval_examples": args.eval_examples, "machine": platform.processor() or platform.machine(),
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
