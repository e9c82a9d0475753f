"""Training speed against the usual adapters + Trainer setup (issue 5): PAN-X English NER, same adapter and head.

    python benchmarks/speed.py --threads 1 --stepstone-args train.precision=bf16 train.group_by_length=true \
        train.backbone_dropout=false backbone.attention=eager        # multilingual-e5-small, the README's run
    python benchmarks/speed.py --backbone tiny --train-examples 64 --eval-examples 16 --epochs 1 --seeds 0
    ... --stepstone-args ... method.bottleneck.leave_out=6 train.cache_frozen_layers=true train.compile=true
                                                                    # issue 17 part 3: AdapterDrop, cache, compile

Setups, each (setup, seed) in its own process (clean peak RSS), run back to back:
  1. adapters-maxlen:  AdapterTrainer + TrainingArguments, tokenised with padding="max_length" to 128, as in the
                       adapters library's example scripts;
  2. adapters-dynamic: the same AdapterTrainer with DataCollatorForTokenClassification (dynamic padding) and
                       group_by_length=True, as a careful user would run it;
  3. stepstone:        `stepstone train` + `stepstone evaluate` (the CLI, in-process), with --stepstone-args.
Same data (first N sentences of target/panx/train-en.tsv), backbone, adapter (sequential bottleneck, reduction 16,
relu), tagging head, lr, warm-up, batch 16, epochs. Reported per setup as mean +- std over seeds: training real
tokens/s (non-padding tokens / wall seconds of the training loop, model loading excluded), seconds per step, peak
RSS, English dev F1 and zero-shot F1 (every other PAN-X dev language, first --eval-examples sentences), and
evaluation sentences/s over all languages (stepstone: the whole `stepstone evaluate`, backbone loading included;
baseline 2: `trainer.predict` per language on the loaded model). F1 is scored by the same function for all.
--stepstone-args reach setup 3 only (the baselines stay as they are); each stepstone run records the method and
train settings its manifest holds (`recorded`), so the JSON shows what ran.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import cpu_model  # benchmarks/memory.py, beside this script

SETUPS = ("adapters-maxlen", "adapters-dynamic", "stepstone")
DEFAULT_BACKBONE = Path("~/.cache/stepstone/multilingual-e5-small").expanduser()


def _data(args: argparse.Namespace):
    from stepstone.tasks import Split, get_task
    from stepstone.tasks.examples import load_examples

    task = get_task("panx")
    train = load_examples(task, Split.TRAIN, "en", args.data_dir, args.train_examples)
    langs = [l for l in task.languages if (args.data_dir / f"target/panx/dev-{l}.tsv").is_file()]
    dev = {lang: load_examples(task, Split.VALIDATION, lang, args.data_dir, args.eval_examples) for lang in langs}
    return task, train, dev


def _baseline(args: argparse.Namespace, setup: str, seed: int) -> dict:
    import torch
    from adapters import AdapterTrainer, AutoAdapterModel, SeqBnConfig
    from transformers import AutoTokenizer, DataCollatorForTokenClassification, TrainingArguments

    from stepstone.backbone import load_backbone
    from stepstone.formats import handler_for
    from stepstone.specs import BackboneSpec

    task, train, dev = _data(args)
    handler = handler_for(task)
    if args.backbone == "tiny":
        loaded = load_backbone(BackboneSpec("tiny"))
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.backbone, fix_mistral_regex=False)  # a transformers 4.57 false alarm
        model = AutoAdapterModel.from_pretrained(args.backbone)
    index = {label: i for i, label in enumerate(task.labels)}
    padding = "max_length" if setup == "adapters-maxlen" else False

    def encode(examples: list[dict]) -> list[dict]:
        enc = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, truncation=True, max_length=128,
                        padding=padding)
        rows = []
        for i, example in enumerate(examples):
            labels, previous = [], None
            for word in enc.word_ids(i):  # the label on a word's first sub-token (run_ner.py's default)
                labels.append(index[example["tags"][word]] if word is not None and word != previous else -100)
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": labels})
        return rows

    torch.manual_seed(seed)
    model.add_adapter("panx", config=SeqBnConfig(reduction_factor=16, non_linearity="relu"))
    model.add_tagging_head("panx", num_labels=len(task.labels))
    model.train_adapter("panx")
    model.set_active_adapters("panx")
    train_rows = encode(train)
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="speed-"), per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=32, num_train_epochs=args.epochs, learning_rate=args.lr, warmup_ratio=0.1,
        weight_decay=0.0, max_grad_norm=1.0, seed=seed, data_seed=seed, save_strategy="no", report_to=[],
        logging_strategy="no", disable_tqdm=True, group_by_length=setup == "adapters-dynamic",
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available())
    collator = DataCollatorForTokenClassification(tokenizer) if padding is False else None
    trainer = AdapterTrainer(model=model, args=training_args, train_dataset=_Rows(train_rows), data_collator=collator)
    start = time.perf_counter()
    out = trainer.train()
    train_seconds = time.perf_counter() - start
    # transformers 4.57 also length-groups *evaluation* batches when group_by_length is on, and
    # trainer.predict then returns predictions in that shuffled order: predict in dataset order
    trainer.args.group_by_length = False
    scores, eval_seconds, sentences = {}, 0.0, 0
    for lang, examples in dev.items():
        rows = encode(examples)
        start = time.perf_counter()
        logits = trainer.predict(_Rows(rows)).predictions
        eval_seconds += time.perf_counter() - start
        sentences += len(examples)
        stepstone_rows = handler.encode(examples, tokenizer, task, 128, 0, train=False)  # word positions for scoring
        scores[lang] = handler.score(examples, stepstone_rows, list(logits), task, lang)["f1"]
    return {"train_seconds": train_seconds, "steps": out.global_step, "f1": scores,
            "eval_seconds": eval_seconds, "eval_sentences": sentences}


class _Rows:
    """A list of feature dicts as a torch Dataset (the Trainer only needs len and getitem)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _stepstone(args: argparse.Namespace, seed: int) -> dict:
    from stepstone_cli.main import app

    zoo = Path(tempfile.mkdtemp(prefix="speed-zoo-"))
    _, _, dev = _data(args)
    common = ["--zoo", str(zoo), "--data-dir", str(args.data_dir), "-q"]
    app(["train", "--task", "panx", "--method", "bottleneck", "--backbone", args.backbone, "--name", "panx-speed",
         *common, f"train.max_train_examples={args.train_examples}", f"train.batch_size={args.batch}",
         f"train.epochs={args.epochs}", f"train.lr={args.lr}", "train.warmup_ratio=0.1", "train.max_length=128",
         "train.select_best=false", "train.dev=false", f"train.seed={seed}", "method.bottleneck.reduction_factor=16",
         *args.stepstone_args], standalone_mode=False)
    manifest = json.loads((zoo / "panx-speed" / "manifest.json").read_text())
    start = time.perf_counter()
    app(["evaluate", "panx-speed", "--split", "validation", "--langs", ",".join(dev), "--max-examples",
         str(args.eval_examples), *common], standalone_mode=False)
    eval_seconds = time.perf_counter() - start
    report = json.loads((zoo / "panx-speed" / "evaluations" / "panx.validation.json").read_text())
    return {"train_seconds": manifest["train_seconds"], "steps": _steps(zoo / "panx-speed"),
            "f1": {lang: s["f1"] for lang, s in report["scores"].items()}, "eval_seconds": eval_seconds,
            "eval_sentences": sum(report["examples"].values()),
            # what the run's manifest says ran: --stepstone-args (leave_out, cache_frozen_layers, compile) included
            "recorded": {"method": manifest["spec"]["method"], "train": manifest["spec"]["train"]}}


def _steps(folder: Path) -> int:
    """Optimizer steps in a run's train_log.jsonl."""
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return sum(json.loads(line).get("kind") == "step" for line in lines)


def _real_tokens(args: argparse.Namespace) -> int:
    """Non-padding tokens of one epoch at max_length 128 (the same tokenisation for every setup)."""
    from stepstone.backbone import load_backbone
    from stepstone.specs import BackboneSpec

    if args.backbone == "tiny":
        tokenizer = load_backbone(BackboneSpec("tiny")).tokenizer
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.backbone, fix_mistral_regex=False)  # a transformers 4.57 false alarm
    _, train, _ = _data(args)
    enc = tokenizer([e["tokens"] for e in train], is_split_into_words=True, truncation=True, max_length=128)
    return sum(len(ids) for ids in enc["input_ids"])


def one(args: argparse.Namespace) -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # every setup, before anything runs (stepstone keeps it)
    result = _stepstone(args, args.seed) if args.one == "stepstone" else _baseline(args, args.one, args.seed)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE) if DEFAULT_BACKBONE.is_dir() else "tiny")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("STEPSTONE_SHARED", "../shared")) / "data")
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--eval-examples", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)  # 5e-4 left PAN-X F1 at ~4 after 375 steps
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--stepstone-args", nargs="*", default=[], help="extra KEY=VALUE settings for setup 3")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for every setup (0 = torch's default: one per core). With 2 threads, any "
                             "other busy process slows a step several-fold; 1 thread keeps timings stable on a shared machine")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    tokens = _real_tokens(args) * args.epochs
    runs, failure = [], None
    for setup, seed in ((u, int(s)) for u in args.setups.split(",") for s in args.seeds.split(",")):
        command = [sys.executable, __file__, "--one", setup, "--seed", str(seed), "--backbone", args.backbone,
                   "--data-dir", str(args.data_dir), "--train-examples", str(args.train_examples),
                   "--eval-examples", str(args.eval_examples), "--epochs", str(args.epochs),
                   "--batch", str(args.batch), "--lr", str(args.lr), "--threads", str(args.threads),
                   "--stepstone-args", *args.stepstone_args]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # stop, but keep what finished: the report below still gets written
            failure = f"{setup} seed {seed} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
            print(failure, flush=True)
            break
        run = {"setup": setup, "seed": seed, **json.loads(done.stdout.strip().splitlines()[-1])}
        run["real_tokens_per_second"] = tokens / run["train_seconds"]
        run["seconds_per_step"] = run["train_seconds"] / run["steps"]
        run["english_f1"] = run["f1"]["en"]
        run["zero_shot_f1"] = statistics.fmean(v for k, v in run["f1"].items() if k != "en")
        run["eval_sentences_per_second"] = run["eval_sentences"] / run["eval_seconds"]
        runs.append(run)
        print(f"{setup:>16} seed {seed}: {run['real_tokens_per_second']:7.0f} real tok/s  "
              f"{run['seconds_per_step']:.3f} s/step  en F1 {run['english_f1']:.1f}  "
              f"zero-shot F1 {run['zero_shot_f1']:.1f}  peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    keys = ("real_tokens_per_second", "seconds_per_step", "peak_rss_mb", "english_f1", "zero_shot_f1",
            "eval_sentences_per_second")
    summary = {setup: {k: _summary([r[k] for r in runs if r["setup"] == setup]) for k in keys}
               for setup in dict.fromkeys(r["setup"] for r in runs)}
    speed = {s: summary[s]["real_tokens_per_second"]["mean"] for s in summary}
    ratios = {f"{a}/{b}": speed[a] / speed[b] for a, b in (("stepstone", "adapters-maxlen"),
                                                           ("stepstone", "adapters-dynamic"),
                                                           ("adapters-dynamic", "adapters-maxlen")) if a in speed and b in speed}
    print(f"\n{'setup':>16} | {'real tok/s':>15} | {'s/step':>13} | {'peak RSS MB':>11} | {'en F1':>11} | "
          f"{'zero-shot F1':>12} | {'eval sent/s':>11}")
    for setup, row in summary.items():
        cells = [f"{row[k]['mean']:.{d}f} ± {row[k]['std']:.{d}f}" for k, d in zip(keys, (0, 3, 0, 1, 1, 0))]
        print(f"{setup:>16} | " + " | ".join(cells))
    for name, value in ratios.items():
        print(f"speedup {name}: {value:.2f}x")
    report = {"backbone": args.backbone, "train_examples": args.train_examples, "eval_examples": args.eval_examples,
              "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "real_tokens": tokens,
              "stepstone_args": args.stepstone_args, "threads": args.threads or None,
              "machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(), "runs": runs, "summary": summary,
              "speedups": ratios, "failure": failure}
    from stepstone.artifacts import write_text_atomic

    write_text_atomic(args.out, json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    if failure is not None:
        raise SystemExit(failure)


if __name__ == "__main__":
    main()
