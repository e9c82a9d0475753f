"""Peak memory and throughput of one training step, per backbone precision x method (issue 5).

    python benchmarks/memory.py                                   # tiny backbone: a quick run
    python benchmarks/memory.py --backbone ~/.cache/stepstone/multilingual-e5-small --steps 5
    python benchmarks/memory.py --backbone random:xlm-roberta-large --batch 32 --length 128   # on a GPU

Each configuration runs in its own process (a clean peak), on synthetic token ids (every token real, no
padding), through stepstone's own loading, adapter and precision code: the backbone as `stepstone train`
loads it (`--quantize`), the method's adapter + a tagging head, AdamW on the trainable parameters only.
Reported: peak memory (CUDA: max allocated; CPU: peak RSS of the process), tokens/s over the timed steps
(after one warm-up step), and on a GPU the fraction of its peak bf16 FLOP/s reached (6 x parameters x tokens
per step for full fine-tuning, 4 x for a frozen backbone: no weight gradients). Writes JSON to --out.

`random:xlm-roberta-large` is an XLM-R Large-shaped model with random weights (no download): speed and
memory do not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def cpu_model() -> dict:
    """This machine's CPU as /proc/cpuinfo names it, and whether it has bf16 instructions (avx512_bf16, amx_bf16):
    with them bf16 steps run several times faster than without, so speed ratios between an fp32 and a bf16 setup
    depend on the CPU as much as on the code (benchmark JSONs record it)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "bf16": None}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = {k.strip(): v.strip() for k, v in fields.items()}.get("flags", "").split()
    model = {k.strip(): v.strip() for k, v in fields.items()}.get("model name", platform.machine())
    return {"model": model, "bf16": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16"))}


CONFIGS = [(q, p, m) for q, p in (("none", "fp32"), ("none", "bf16"), ("4bit", "bf16"), ("8bit", "fp32"))
           for m in ("bottleneck", "lora", "full") if not (q != "none" and m == "full")]
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
             eos_token_id=2)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}  # dense, no sparsity


def materialise(name: str, folder: Path) -> str:
    """`random:xlm-roberta-large` -> a saved random model folder (quantised loading needs one)."""
    if not name.startswith("random:"):
        return name
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from stepstone.tiny import build_tiny_tokenizer

    target = folder / "xlm-roberta-large-random"
    if not (target / "config.json").is_file():
        XLMRobertaModel(XLMRobertaConfig(**LARGE)).save_pretrained(target)
        build_tiny_tokenizer().save_pretrained(target)  # ids are synthetic: any fast tokenizer serves
    return str(target)


def one(args: argparse.Namespace) -> dict:
    import torch

    from stepstone import methods
    from stepstone.backbone import device, load_backbone, place
    from stepstone.precision import grad_scaler
    from stepstone.specs import BackboneSpec, MethodSpec, Precision, Quantize
    from stepstone.training import MODES, enable_grad_checkpointing, set_trainable, trainable_names

    quantize, precision, method = args.one.split(",")
    torch.manual_seed(0)
    backbone = load_backbone(BackboneSpec(args.backbone, quantize=Quantize(quantize)))
    model, where = backbone.model, device()
    spec = MethodSpec(kind=method)
    full = spec.registered.train_mode == "full"
    if not full:
        methods.add_adapter(model, "bench", spec)
    model.add_tagging_head("bench", num_labels=7)
    methods.activate(model, None if full else "bench", head="bench")
    place(model)
    mode = MODES.get(spec.registered.train_mode)
    trainable = set_trainable(model, trainable_names(model, mode, "bench"), backbone.num_parameters)
    if args.grad_checkpointing:
        enable_grad_checkpointing(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler, prec = grad_scaler(Precision(precision), where), Precision(precision)
    if where.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, _ = timed_steps(model, optimizer, scaler, prec, where, args.batch, args.length, args.steps)
    step = sum(times[1:]) / len(times[1:])
    tokens = args.batch * args.length
    flops = (6 if full else 4) * backbone.num_parameters * tokens
    out = {"quantize": quantize, "precision": precision, "method": method,
           "grad_checkpointing": args.grad_checkpointing, "trainable_parameters": trainable.count,
           "backbone_parameters": backbone.num_parameters, "seconds_per_step": step, "tokens_per_second": tokens / step,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(where)}
    if where.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        out.update(gpu=name, peak_gpu_memory_mb=torch.cuda.max_memory_allocated() / 2**20,
                   achieved_tflops=flops / step / 1e12,
                   fraction_of_peak_bf16=None if peak is None else flops / step / 1e12 / peak)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default="all", help="'all' or QUANTIZE,PRECISION,METHOD;... ")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        args.backbone = materialise(args.backbone, Path(scratch))
        configs = CONFIGS if args.configs == "all" else [tuple(c.split(",")) for c in args.configs.split(";")]
        rows = []
        for config in configs:
            command = [sys.executable, __file__, "--one", ",".join(config), "--backbone", args.backbone,
                       "--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps)]
            command += ["--grad-checkpointing"] if args.grad_checkpointing else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                error = (done.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"quantize": config[0], "precision": config[1], "method": config[2], "error": error})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{row['quantize']:>5} {row['precision']:>5} {row['method']:>10}  " + (
                f"peak {row.get('peak_gpu_memory_mb', row['peak_rss_mb']):8.0f} MB  "
                f"{row['tokens_per_second']:9.0f} tok/s  trainable {row['trainable_parameters']:,}"
                if "error" not in row else f"error: {row['error']}"), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"backbone": args.backbone, "batch": args.batch, "length": args.length, "steps": args.steps,
              "grad_checkpointing": args.grad_checkpointing, "threads": os.environ.get("STEPSTONE_THREADS"),
              "machine": platform.machine(), "cpu": cpu_model(), "python": platform.python_version(), "rows": rows}
    from stepstone.artifacts import write_text_atomic

    write_text_atomic(args.out, json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


def timed_steps(model, optimizer, scaler, prec, where, batch: int, length: int, steps: int,
                extra=None) -> tuple[list[float], list[float]]:
    """steps + 1 training steps on random tokens and tags (head "bench", 7 tags): each step's wall seconds (the
    device synchronised around it; the first is warm-up) and loss. `extra(model)`: a loss added to the head's
    (a training mode's regulariser)."""
    import torch

    from stepstone.precision import autocast

    ids = torch.randint(5, model.config.vocab_size, (batch, length), device=where)
    labels = torch.randint(0, 7, (batch, length), device=where)
    mask = torch.ones_like(ids)
    model.train()
    times, losses = [], []
    for _ in range(steps + 1):
        if where.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(prec, where):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, head="bench").loss
            if extra is not None:
                loss = loss + extra(model)
        scaler.scale(loss.float()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if where.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return times, losses


if __name__ == "__main__":
    main()

