"""GPU checks ready to run in one short call (issue 17): memory, speed and MFU of each method and precision on an
XLM-R Large-shaped model, a Fuse of three adapters, full fine-tuning, and `stepstone train` + `evaluate` end to end.

    python benchmarks/gpu/check.py --out DIR                    # on the GPU (through benchmarks/gpu/check.sh)
    python benchmarks/gpu/check.py --cpu --out DIR              # the dry run: tiny shapes, 4/8-bit skipped

Every measurement runs in its own try block: a failure is recorded (its last line) and the rest go on. Once
--budget-seconds are spent no new measurement starts (recorded as "skipped: budget spent"). The report is written
after each measurement (atomically), so a run stopped at the device's time limit still leaves what it measured.

FLOPs per step (the `flop_formula` in the report). T = tokens per step, N = parameters that multiply activations
(every parameter but the embedding tables: a lookup costs no FLOPs; adapters and head included), L layers,
s sequence length, h hidden size. Forward F = 2 N T + 4 L s h T (the second term: QK^T and AV). Full fine-tuning:
3 F (backward = activation gradients + weight gradients, each ~F). Frozen backbone + adapters: 2 F + 2 N_train T:
the backward pass still computes every layer's activation gradients (the adapters in the lower layers need them),
but weight gradients only for the trainable parameters. MFU = FLOPs per step / seconds per step / peak, the peak
being the H200's dense bf16 tensor-core rate (989 TFLOP/s, NVIDIA's H200 datasheet: 1,979 with 2:4 sparsity); fp32
rows are measured against the same bf16 peak so the rows compare. All measurements share one process (one model
build, no per-process start on the device's clock): peak GPU memory is reset before each, but `peak_rss_mb` is the
process's peak so far (on the CPU dry run the only memory figure, and cumulative).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from memory import LARGE, materialise, timed_steps  # noqa: E402  (the project's XLM-R Large shape and random build)

PEAK = {"tflops": 989.0, "what": "NVIDIA H200 dense bf16 tensor-core peak (SXM)",
        "source": "NVIDIA H200 Tensor Core GPU datasheet: 1,979 TFLOPS bf16 with 2:4 sparsity, half of it dense"}
FLOP_FORMULA = ("forward F = 2*N*T + 4*L*s*h*T (N: non-embedding parameters incl. adapters and head, T tokens); "
                "full fine-tuning 3*F; frozen backbone 2*F + 2*N_trainable*T (activation gradients through every "
                "layer, weight gradients for the trainable parameters only)")
# (name, method, quantize, precision): 8-bit stays fp32 compute as in benchmarks/memory.py (bitsandbytes' int8
# matmul takes fp16/fp32 inputs), 4-bit computes in bf16 (QLoRA's setting).
RUNS = [(f"{m}-{label}", m, q, p) for m in ("bottleneck", "lora")
        for label, q, p in (("fp32", "none", "fp32"), ("bf16", "none", "bf16"), ("4bit", "4bit", "bf16"),
                            ("8bit", "8bit", "fp32"))]
RUNS += [("fuse3-bf16", "fuse", "none", "bf16"), ("full-fp32", "full", "none", "fp32"),
         ("full-bf16", "full", "none", "bf16")]
CLI = "cli-train-evaluate-tiny"
NAMES = [r[0] for r in RUNS] + [CLI]


def flops_per_step(model, mode_full: bool, trainable: int, tokens: int, length: int) -> float:
    config = model.config
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embeddings." in n)
    matmul = sum(p.numel() for p in model.parameters()) - embeddings
    forward = 2 * matmul * tokens + 4 * config.num_hidden_layers * length * config.hidden_size * tokens
    return 3 * forward if mode_full else 2 * forward + 2 * trainable * tokens


def train_measure(args, method: str, quantize: str, precision: str) -> dict:
    """One step (timed alone: it holds the CUDA warm-up) then args.steps more, on synthetic ids, with the model
    stepstone builds (load_backbone, methods, set_trainable): the same build as benchmarks/memory.py."""
    import torch

    from stepstone import methods
    from stepstone.backbone import device, load_backbone, place
    from stepstone.precision import grad_scaler
    from stepstone.specs import BackboneSpec, MethodSpec, Precision, Quantize
    from stepstone.training import MODES, set_trainable, trainable_names

    torch.manual_seed(0)
    where = device()
    if where.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    backbone = load_backbone(BackboneSpec(args.backbone, quantize=Quantize(quantize)))
    model = backbone.model
    extra = None
    if method == "fuse":
        # Fuse(m0, m1, m2) + a head: the fusion mode trains the Fuse layer and the head, members frozen.
        from adapters.composition import Fuse
        members = ("m0", "m1", "m2")
        for m in members:
            methods.add_adapter(model, m, MethodSpec(kind="bottleneck"))
        methods.add_fusion(model, members)
        model.add_tagging_head("bench", num_labels=7)
        methods.activate(model, Fuse(*members), head="bench")
        mode = MODES.get("fusion")
        names = trainable_names(model, mode, "bench", layer=methods.fusion_name(members))
        extra = mode.extra_loss
    else:
        spec = MethodSpec(kind=method)
        mode = MODES.get(spec.registered.train_mode)
        if mode.name != "full":
            methods.add_adapter(model, "bench", spec)
        model.add_tagging_head("bench", num_labels=7)
        methods.activate(model, None if mode.name == "full" else "bench", head="bench")
        names = trainable_names(model, mode, "bench")
    place(model)
    trainable = set_trainable(model, names, backbone.num_parameters)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    prec = Precision(precision)
    scaler = grad_scaler(prec, where)
    times, losses = timed_steps(model, optimizer, scaler, prec, where, args.batch, args.length, args.steps, extra)
    tokens = args.batch * args.length
    step = sum(times[1:]) / len(times[1:])
    flops = flops_per_step(model, mode.name == "full", trainable.count, tokens, args.length)
    out = {"method": method, "quantize": quantize, "precision": precision, "mode": mode.name,
           "trainable_parameters": trainable.count, "backbone_parameters": backbone.num_parameters,
           "first_step_seconds": times[0], "steps": args.steps, "seconds_per_step": step,
           "tokens_per_second": tokens / step, "flops_per_step": flops, "achieved_tflops": flops / step / 1e12,
           "first_loss": losses[0], "last_loss": losses[-1],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if where.type == "cuda":
        out.update(peak_gpu_memory_mb=torch.cuda.max_memory_allocated() / 2**20,
                   mfu=flops / step / 1e12 / PEAK["tflops"])
    else:
        out.update(peak_gpu_memory_mb=None, mfu=None)  # no GPU, no peak to compare with
    del model, backbone, optimizer
    return out


def cli_measure(args) -> dict:
    """`stepstone train` + `stepstone evaluate` on `tiny`, as a user runs them (a subprocess each): toy tasks need
    no data; the GPU is picked by stepstone's own device choice."""
    from stepstone.backbone import device

    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "cli"),
                                                            os.environ.get("PYTHONPATH", "")])}
        stepstone = [sys.executable, "-c", "from stepstone_cli.main import app; app()"]
        small = ["train.epochs=1", "train.max_train_examples=32", "train.max_eval_examples=16", "train.batch_size=16"]
        seconds = {}
        for step, command in (("train", ["train", "--task", "toy-tags", "--method", "bottleneck", "--zoo", "zoo",
                                         "--name", "gpu-check", "-q", *small]),
                              ("evaluate", ["evaluate", "gpu-check", "--zoo", "zoo", "--split", "validation", "--langs", "en",
                                            "--max-examples", "16", "-q"])):
            start = time.perf_counter()
            done = subprocess.run(stepstone + command, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=300)
            seconds[step] = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"stepstone {step} exited {done.returncode}: "
                                   + ((done.stderr or done.stdout).strip().splitlines() or ["?"])[-1])
        folder = Path(work) / "zoo" / "gpu-check"  # a plain adapter run becomes a zoo entry
        manifest = json.loads((folder / "manifest.json").read_text())
        report = json.loads(next((folder / "evaluations").glob("*.json")).read_text())
        return {"train_seconds": seconds["train"], "evaluate_seconds": seconds["evaluate"],
                "dev_metric": manifest["metrics"]["dev"], "evaluated_en": report["scores"]["en"],
                "evaluation_matches_training": report["scores"]["en"] == manifest["metrics"]["dev"],
                # the device stepstone's own choice gives in this environment (the manifest does not record it)
                "device": str(device())}


def skip_reason(quantize: str, cuda: bool) -> str | None:
    if quantize == "none":
        return None
    if not cuda:
        return "skipped: needs CUDA"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "skipped: bitsandbytes not installed (its wheel did not fit the 64 MiB travel budget)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the dry run: tiny shapes on the CPU, 4/8-bit skipped")
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    parser.add_argument("--budget-seconds", type=float, default=480.0,
                        help="no measurement starts after this many seconds (default 480: 8 of the device's 15 min)")
    parser.add_argument("--steps", type=int, help="short training steps after the first (default 10; --cpu 2)")
    parser.add_argument("--batch", type=int, help="default 32 (--cpu 4)")
    parser.add_argument("--length", type=int, help="default 128 (--cpu 16)")
    parser.add_argument("--only", help="comma-separated measurement names (default all): " + ",".join(NAMES))
    args = parser.parse_args()
    started = time.monotonic()
    if args.cpu:
        os.environ["STEPSTONE_DEVICE"] = "cpu"  # the same code path, on the CPU even where a GPU is present
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    args.steps = args.steps or (2 if args.cpu else 10)
    args.batch = args.batch or (4 if args.cpu else 32)
    args.length = args.length or (16 if args.cpu else 128)
    wanted = NAMES if not args.only else args.only.split(",")
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        sys.exit(f"check.py: unknown measurement {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    from stepstone.artifacts import write_text_atomic

    versions = {}
    for name in ("torch", "transformers", "adapters", "peft", "datasets", "bitsandbytes", "tokenizers"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001  (absent or broken: recorded, not fatal)
            versions[name] = None
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / "gpu-check.json"
    with tempfile.TemporaryDirectory() as scratch:
        args.backbone = "tiny" if args.cpu else materialise("random:xlm-roberta-large", Path(scratch))
        report = {"dry_run": args.cpu, "backbone": "tiny" if args.cpu else "random xlm-roberta-large",
                  "shape": None if args.cpu else LARGE, "batch": args.batch, "length": args.length,
                  "steps": args.steps, "budget_seconds": args.budget_seconds, "peak": PEAK,
                  "flop_formula": FLOP_FORMULA, "gpu": torch.cuda.get_device_name() if cuda else None,
                  "machine": platform.machine(), "python": platform.python_version(), "versions": versions,
                  "measurements": {}}
        for name in NAMES:
            if name not in wanted:
                continue
            spent = time.monotonic() - started
            row: dict
            if spent > args.budget_seconds:
                row = {"skip": f"skipped: budget spent ({spent:.0f} s of {args.budget_seconds:.0f})"}
            elif name == CLI:
                row = run_guarded(lambda: cli_measure(args))
            else:
                _, method, quantize, precision = next(r for r in RUNS if r[0] == name)
                reason = skip_reason(quantize, cuda)
                row = {"skip": reason} if reason else run_guarded(
                    lambda: train_measure(args, method, quantize, precision))
            report["measurements"][name] = row
            report["elapsed_seconds"] = time.monotonic() - started
            write_text_atomic(out_file, json.dumps(report, indent=2, sort_keys=True) + "\n")
            print(f"{name:>24}  " + summary(row), flush=True)
    print(f"wrote {out_file}")


def run_guarded(measure) -> dict:
    import torch
    try:
        return measure()
    except Exception as error:  # noqa: BLE001  (one failure is a result; the other measurements go on)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        return {"error": last[:500]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next measurement's peak starts from an empty allocator


def summary(row: dict) -> str:
    if "skip" in row or "error" in row:
        return row.get("skip") or f"error: {row['error']}"
    if "tokens_per_second" in row:
        mem = row["peak_gpu_memory_mb"] if row["peak_gpu_memory_mb"] is not None else row["peak_rss_mb"]
        mfu = "" if row["mfu"] is None else f"  MFU {100 * row['mfu']:.1f}%"
        return f"{row['tokens_per_second']:9.0f} tok/s  peak {mem:8.0f} MB{mfu}"
    return f"train {row['train_seconds']:.1f} s, evaluate {row['evaluate_seconds']:.1f} s, dev {row['dev_metric']}"


if __name__ == "__main__":
    main()
