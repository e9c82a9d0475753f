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
SMALL = {
    "sentence classification": ("sst2", "train", 1000, 2, 64, True),
    "pair classification": ("xnli", "validation", 1000, 2, 96, True),  # English XNLI dev: front trains, end is dev
    "multiple choice": ("copa", "train", 400, 2, 64, True),  # all of COPA's train split
    "qa": ("tydiqa", "train", 500, 1, 96, False),  # TyDiQA's dev answers are blank here: loss only
    "tagging": ("udpos", "train", 500, 1, 96, True),
}
# issue 18's cpu-medium grid: every task it trains, at the size it trains it (targets: ~1,000 English examples;
# intermediate tasks: what ../shared has, capped where one run would take too long on 2 cores), dev after every
# epoch (the curve). "<family>/<task>" -> as above.
MEDIUM = {  # ... and the learning rates swept (--lrs instead)
    "tagging/udpos": ("udpos", "train", 1000, 3, 128, True, (5e-3, 2e-3)),
    "tagging/panx": ("panx", "train", 1000, 3, 128, True, (5e-3, 2e-3)),
    "pair classification/xnli": ("xnli", "validation", 1000, 3, 128, True, (1e-3, 3e-4)),
    "pair classification/pawsx": ("pawsx", "validation", 1000, 3, 128, True, (1e-3, 3e-4)),
    "qa/tydiqa": ("tydiqa", "train", 1000, 2, 192, False, (1e-3, 3e-3)),
    "sentence classification/sst2": ("sst2", "train", 5000, 1, 64, True, (1e-3,)),
    "pair classification/anli": ("anli", "validation", 2700, 2, 128, True, (1e-3,)),
    "multiple choice/siqa": ("siqa", "validation", 1700, 2, 96, True, (1e-3, 3e-4)),
    "multiple choice/commonsenseqa": ("commonsenseqa", "validation", 1000, 3, 64, True, (1e-3,)),
    "multiple choice/hellaswag": ("hellaswag", "validation", 2000, 1, 96, True, (1e-3,)),
    "multiple choice/cosmosqa": ("cosmosqa", "validation", 2500, 1, 160, True, (1e-3,)),
}
PLANS = {"small": SMALL, "medium": MEDIUM}


def run(family: str, lr: float, args: argparse.Namespace, root: Path) -> dict:
    from stepstone import pipelines
    from stepstone.specs import BackboneSpec, MethodSpec, RunSpec, TrainSpec
    from stepstone.zoo import Zoo

    task, split, examples, epochs, length, dev = PLANS[args.plan][family][:6]
    if args.examples:
        examples = min(examples, args.examples)
    if args.epochs:
        epochs = args.epochs
    # medium: dev after every epoch (the curve), the last epoch kept (what is reported is the curve, not a pick)
    train = TrainSpec(lr=lr, epochs=epochs, batch_size=16, max_length=length, doc_stride=min(32, length // 4),
                      max_train_examples=examples, max_eval_examples=args.eval_examples, threads=args.threads,
                      dev=dev, select_best=args.plan == "medium" and dev, checkpoint_every=0,
                      group_by_length=args.plan == "medium")
    name = f"{task}-{lr:g}".replace(".", "_").replace("-", "_")
    spec = RunSpec(task=task, name=name, backbone=BackboneSpec(args.backbone), train=train, train_split=split,
                   data_dir=args.data_dir, method=MethodSpec(kind=args.method))
    start = time.monotonic()
    outcome = pipelines.train_run(spec, zoo=Zoo(root / "zoo"), runs_dir=root / "runs")
    manifest = outcome.manifest
    learning = manifest["learning"]
    metric = learning["metric"]  # what the verdict held against chance and the majority: UD-POS's token accuracy
    return {"family": family, "task": task, "method": args.method, "lr": lr, "train_examples": manifest["data"]["train_examples"],
            "train_features": manifest["data"]["train_features"], "dev_examples": manifest["data"]["dev_examples"],
            "epochs": epochs, "max_length": length, "steps": outcome.result.steps, "metric": metric,
            "dev": manifest["metrics"]["dev"].get(metric), "loss_start": learning["loss_start"],
            "loss_end": learning["loss_end"], "prior_loss": learning["prior_loss"], "chance": learning["chance"],
            "majority": learning["majority"], "margin": learning["margin"], "verdict": learning["verdict"],
            "reason": learning["reason"],
            "curve": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 4),
                       **({"dev": round(h["dev"][metric], 2)} if h.get("dev") else {})}
                      for h in outcome.result.history],
            "seconds": round(time.monotonic() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--plan", choices=sorted(PLANS), default="small",
                        help="small: one task per family (cpu-small); medium: every task of the cpu-medium grid")
    parser.add_argument("--families", default=None,
                        help="comma-separated keys of the plan (default: all of them); see SMALL and MEDIUM")
    parser.add_argument("--method", default="bottleneck", help="bottleneck (default), lora, full, ...")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the plan's epochs")
    parser.add_argument("--lrs", default=None, help="comma-separated (default: the plan's, small: 1e-3,5e-3)")
    parser.add_argument("--examples", type=int, default=None, help="cap every family's training examples")
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plan = PLANS[args.plan]
    families = [f.strip() for f in (args.families or ",".join(plan)).split(",") if f.strip()]
    unknown = [f for f in families if f not in plan]
    if unknown:
        sys.exit(f"error: unknown family {', '.join(unknown)} (valid: {', '.join(plan)})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            lrs = plan[family][6] if len(plan[family]) > 6 and args.lrs is None else (args.lrs or "1e-3,5e-3").split(",")
            for lr in (float(x) for x in lrs):
                row = run(family, lr, args, Path(tmp))
                rows.append(row)
                dev = "–" if row["dev"] is None else f"{row['dev']:.1f}"
                print(f"{family:24} {row['task']:7} lr {lr:g}: dev {row['metric']} {dev}, loss "
                      f"{row['loss_start']:.3f} -> {row['loss_end']:.3f}, {row['verdict']} ({row['seconds']:.0f}s)"
                      f" curve {row['curve']}", flush=True)
                if args.plan == "medium":  # a long sweep: what has run so far is kept
                    _write(args, rows)
    _write(args, rows)


def _write(args: argparse.Namespace, rows: list[dict]) -> None:
    report = {"backbone": args.backbone, "plan": args.plan, "method": args.method, "batch_size": 16, "threads": args.threads,
              "eval_examples": args.eval_examples, "machine": platform.processor() or platform.machine(),
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(args.out)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
