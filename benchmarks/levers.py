"""What each training-speed lever buys, one at a time, on the same batches (issue 5).

    python benchmarks/levers.py                     # multilingual-e5-small, PAN-X English, 1 thread
    python benchmarks/levers.py --backbone tiny --batches 6 --leave-out 1

Times forward + backward + AdamW step of a sequential bottleneck adapter (reduction 16) with a tagging head on
`--batches` batches of 16 PAN-X English sentences (the first `--warmup` batches are not timed), for each lever
added to the previous ones:
  fp32            batches in file order, padded to their longest row (dynamic padding)
  grouped         rows of similar length share a batch (train.group_by_length)
  bf16            autocast to bf16 (train.precision=bf16); frozen linear weights re-cast on every call
  bf16-lowered    the frozen backbone's linear weights held in bf16 once (what stepstone does under bf16)
  no-dropout      the frozen backbone's dropout off (train.backbone_dropout=false)
  eager           eager attention instead of SDPA (backbone.attention=eager), dropout still off
  eager-dropout   eager attention with the backbone's dropout on (the recipe unchanged)
  compile         the `eager` row under torch.compile(dynamic=True), with an empty inductor cache: its ms/step
                  is the median pass after the first; compile_seconds is what the first pass took beyond that
                  (what a run pays once per process; --no-compile leaves the row out)
  adapterdrop     the `eager` row with no adapter in the lowest --leave-out layers (method.bottleneck.leave_out;
                  AdapterDrop, Rücklé et al. 2021): the backward stops below the first adapter. Changes the model
  cached          adapterdrop + train.cache_frozen_layers (stepstone.training.frozen, the library's own cache): the
                  frozen bottom's output is computed in the first pass and reused after it; its ms/step is the
                  median pass after the first, first_pass_ms_per_step the pass that filled the cache
                  (--leave-out 0 leaves both rows out)
The last two rows come after `compile` so that the rows before keep their meaning; `x previous` compares
adapterdrop with eager and cached with adapterdrop.
Writes JSON (ms/step, real tokens/s, speedup over fp32 and over the previous lever) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

LEVERS = ("fp32", "grouped", "bf16", "bf16-lowered", "no-dropout", "eager", "eager-dropout", "compile", "adapterdrop",
          "cached")
# Rücklé et al. (2021) drop the adapters of the first 5 of 12 layers with little loss; 4 of e5-small's 12 stays
# inside that and is what the README's speed.py runs measured (PAN-X F1 within noise of the full adapter)
LEAVE_OUT = 4
DEFAULT_BACKBONE = Path("~/.cache/stepstone/multilingual-e5-small").expanduser()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE) if DEFAULT_BACKBONE.is_dir() else "tiny")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("STEPSTONE_SHARED", "../shared")) / "data")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the batches per lever (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    parser.add_argument("--leave-out", type=int, default=LEAVE_OUT,
                        help=f"lowest layers without an adapter in the adapterdrop and cached rows ({LEAVE_OUT}; "
                             "0 leaves both rows out)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/levers.json"))
    args = parser.parse_args()
    if args.repeats < 2 and not args.no_compile:
        parser.error("the compile row needs --repeats 2 or more (the first pass compiles); or pass --no-compile")
    if args.repeats < 2 and args.leave_out:
        parser.error("the cached row needs --repeats 2 or more (the first pass fills the cache); or pass --leave-out 0")

    import torch

    from stepstone.artifacts import write_text_atomic
    from stepstone.backbone import load_backbone
    from stepstone.formats import handler_for
    from stepstone.methods import BottleneckSpec, add_adapter, backbone_dropout_off
    from stepstone.precision import autocast, frozen_linears_lowered
    from stepstone.specs import Attention, BackboneSpec, MethodSpec, Precision
    from stepstone.tasks import Split, get_task
    from stepstone.tasks.examples import load_examples
    from stepstone.training import GROUP_BATCHES, TaskData, _batches
    from stepstone.training.frozen import FrozenLayerCache

    torch.set_num_threads(args.threads)
    task = get_task("panx")
    examples = load_examples(task, Split.TRAIN, "en", args.data_dir, 16 * (args.batches + args.warmup))
    handler = handler_for(task)

    def build(attention: Attention, leave_out: int = 0):
        loaded = load_backbone(BackboneSpec(args.backbone, attention=attention))
        torch.manual_seed(0)
        add_adapter(loaded.model, "a", MethodSpec(kind="bottleneck", bottleneck=BottleneckSpec(leave_out=leave_out)))
        handler.add_head(loaded.model, "a", task)
        loaded.model.train_adapter("a")
        loaded.model.set_active_adapters("a")
        optimizer = torch.optim.AdamW([p for p in loaded.model.parameters() if p.requires_grad], lr=1e-4)
        return loaded.model, loaded.tokenizer, optimizer

    models = {(Attention.SDPA, 0): build(Attention.SDPA)}
    model, tokenizer, _ = models[Attention.SDPA, 0]
    layers = model.config.num_hidden_layers
    if args.leave_out >= layers:
        parser.error(f"--leave-out {args.leave_out}: the backbone has {layers} layers; use 0 to {layers - 1}")
    rows = handler.encode(examples, tokenizer, task, 128, 64, train=True)
    in_order = [rows[i:i + 16] for i in range(0, len(rows), 16)]
    # train.group_by_length's own batches (one pass; under GROUP_BATCHES batches, the whole sample is one group)
    stream = _batches(TaskData(task, handler, "a", rows, [], []), 16, torch.Generator().manual_seed(0), by_length=True)
    grouped = [next(stream) for _ in in_order]
    results = {}
    for lever in LEVERS:
        if (lever == "compile" and args.no_compile) or (lever in ("adapterdrop", "cached") and not args.leave_out):
            continue
        dropped = args.leave_out if lever in ("adapterdrop", "cached") else 0
        attention = Attention.SDPA if lever in ("fp32", "grouped", "bf16", "bf16-lowered", "no-dropout") \
            else Attention.EAGER
        if (attention, dropped) not in models:
            models[attention, dropped] = build(attention, dropped)
        model, _, optimizer = models[attention, dropped]
        device = next(model.parameters()).device
        batches = in_order if lever == "fp32" else grouped
        precision = Precision.FP32 if lever in ("fp32", "grouped") else Precision.BF16
        times, pass_seconds, forward = [], [], model
        with ExitStack() as stack:
            if lever not in ("fp32", "grouped", "bf16"):
                stack.enter_context(frozen_linears_lowered(model, precision))
            if lever in ("no-dropout", "eager", "compile", "adapterdrop", "cached"):
                stack.enter_context(backbone_dropout_off(model))
            cache = FrozenLayerCache.of(model) if lever == "cached" else None
            if lever == "compile":  # a cold start: no kernels compiled by an earlier run
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = stack.enter_context(tempfile.TemporaryDirectory())
                forward = torch.compile(model, dynamic=True)
            model.train()
            for _ in range(args.repeats):
                pass_start = time.perf_counter()
                torch.manual_seed(0)
                for i, group in enumerate(batches):
                    batch = handler.collate(group, tokenizer)
                    start = time.perf_counter()
                    with autocast(precision, device), (cache.feeding(group, batch) if cache else ExitStack()):
                        loss = forward(**{k: v.to(device) for k, v in batch.items()}, head="a").loss
                    loss.float().backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if i >= args.warmup:
                        times.append((time.perf_counter() - start, int(batch["attention_mask"].sum()),
                                      int(batch["attention_mask"].numel())))
                pass_seconds.append(time.perf_counter() - pass_start)
        n = len(times) // args.repeats
        passes = [times[k * n:(k + 1) * n] for k in range(args.repeats)]
        extra = {}
        if lever == "compile":  # the first pass compiled; time steady state on the others
            passes, per_pass_seconds = passes[1:], pass_seconds[1:]
            extra["compile_seconds"] = pass_seconds[0] - statistics.median(per_pass_seconds)
        if lever == "cached":  # the first pass filled the cache; time the passes that reuse it
            extra["first_pass_ms_per_step"] = 1000 * sum(t for t, _, _ in passes[0]) / len(passes[0])
            extra["leave_out"] = args.leave_out
            passes = passes[1:]
        if lever == "adapterdrop":
            extra["leave_out"] = args.leave_out
        per_pass = [(sum(t for t, _, _ in p), sum(n for _, n, _ in p), sum(m for _, _, m in p)) for p in passes]
        seconds = statistics.median(s for s, _, _ in per_pass)
        real, padded = per_pass[0][1], per_pass[0][2]
        results[lever] = {"ms_per_step": 1000 * seconds / len(passes[0]), "real_tokens_per_second": real / seconds,
                          "padding_share": 1 - real / padded, **extra}
    previous = None
    for lever, row in results.items():
        if lever in ("compile", "adapterdrop"):  # compared with the eager row, not with the row printed before
            previous = results["eager"]["real_tokens_per_second"]
        row["speedup_vs_fp32"] = row["real_tokens_per_second"] / results["fp32"]["real_tokens_per_second"]
        row["speedup_vs_previous"] = row["real_tokens_per_second"] / previous if previous else 1.0
        previous = row["real_tokens_per_second"]
    print(f"{'lever':>13} | {'ms/step':>8} | {'real tok/s':>10} | {'padding':>7} | {'x fp32':>6} | {'x previous':>10}")
    for lever, row in results.items():
        print(f"{lever:>13} | {row['ms_per_step']:8.1f} | {row['real_tokens_per_second']:10.0f} | "
              f"{row['padding_share']:7.1%} | {row['speedup_vs_fp32']:6.2f} | {row['speedup_vs_previous']:10.2f}"
              + (f" | compiling took {row['compile_seconds']:.0f} s" if "compile_seconds" in row else "")
              + (f" | first pass {row['first_pass_ms_per_step']:.1f} ms/step" if "first_pass_ms_per_step" in row else ""))
    report = {"backbone": args.backbone, "batches": args.batches, "warmup": args.warmup, "repeats": args.repeats,
              "threads": args.threads, "batch_size": 16, "leave_out": args.leave_out, "group_batches": GROUP_BATCHES, "levers": results}
    write_text_atomic(args.out, json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
