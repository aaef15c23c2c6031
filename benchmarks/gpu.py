"""The GPU check: how fast each run of both studies trains on this GPU, and what the studies cost.

One command, one table, one JSON file (issue 18). It measures, on the device given:

1. ResNet-14 training steps per norm at batch 128 and 8, in the trainer's own pieces
   (``build_model``, ``build_optimizer``, ``iterate_batches`` with augmentation, label
   smoothing, BIN's gate clipping), in several modes: eager or ``torch.compile``
   (default, or ``reduce-overhead`` = CUDA graphs for batch 8), NCHW or channels_last,
   float32 or bf16 autocast. Images are random uint8 tensors of CIFAR-10's shapes
   (speed does not depend on pixel values); a full-data epoch is 312 (batch 128) or 5,000
   (batch 8) steps plus a forward pass over the 10,000 validation images.
2. A real ``resnet.fit`` of 2 epochs on real CIFAR-10 images (``--cifar``), with the GPU
   defaults: the cold first epoch (compilation, the image cache) against a warm one.
3. Real ``ner.fit`` epochs (one epoch, evaluation every 100 updates as the study does) of
   the three kinds of NER run: plain BiLSTM, chars + CRF, chars + layer norm + CRF. Random
   50-d embeddings stand in for GloVe 6B 50-d (same shapes, same cost).
4. K runs sharing one GPU (K = 1, 2, 4, 8): K processes train batch-128 and then batch-8
   steps in the same time window (compiled on a GPU); aggregate steps/s against one run alone.
5. From these: the estimated wall time of the full ResNet study (13 runs, 100 epochs) and
   the NER study (8 runs, at most 50 epochs) on this GPU, one run at a time and K at a time.

Measurements run in order of importance and stop at ``--max-seconds`` (the rest is listed
as not measured), so the check fits a short lease.

    python benchmarks/gpu.py --cifar ../shared/data/cifar10-jpeg.zip --gmb ../shared/data/gmb/ner_dataset.csv.zip
    python benchmarks/gpu.py --device cpu --quick ...     # tiny sizes: CI runs this so it cannot rot

Last measured: see benchmarks/README.md#gpu-check and benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

NORMS = ("torch_bn", "bn", "in", "bin", "ln", "gn", "nn")
TRAIN_IMAGES, VAL_IMAGES = 40_000, 10_000
QUICK_BATCH = {128: 16, 8: 4}
# mode name -> (compile mode or None, channels_last, bf16)
MODES = {
    "eager": (None, False, False),
    "eager_bf16_cl": (None, True, True),
    "compiled_cl": ("default", True, False),
    "compiled_bf16_cl": ("default", True, True),
    "graphs_cl": ("reduce-overhead", True, False),
    "graphs_bf16_cl": ("reduce-overhead", True, True),
}


class Clock:
    """The time left of ``--max-seconds``; a measurement that would start too late is skipped."""

    def __init__(self, limit: float) -> None:
        self.t0, self.limit = time.perf_counter(), limit
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def allows(self, what: str, needs: float) -> bool:
        if self.elapsed() + needs > self.limit:
            self.skipped.append(what)
            print(f"  skipped (time budget): {what}", flush=True)
            return False
        return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(norm: str, batch: int, mode: str, device: torch.device, images: int):
    """A closure that runs one training step of the trainer's own pieces, and the eval forward."""
    from normlab.data.image_batches import iterate_batches
    from normlab.norms import clip_gates_
    from normlab.train.resnet import ResNetConfig, build_model
    from normlab.train.resnet_optim import build_optimizer

    compile_mode, channels_last, bf16 = MODES[mode]
    cfg = ResNetConfig(norm=norm, batch_size=batch, gn_groups=8 if norm == "gn" else None, label_smoothing=0.1,
                       device=str(device))
    torch.manual_seed(0)
    model = build_model(cfg, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, model)
    if compile_mode and device.type == "cpu" and images <= 2048:
        # --quick on a CPU (CI): the compile path without inductor's C++ build (minutes on 2 cores)
        net = torch.compile(model, backend="aot_eager")
    else:
        net = torch.compile(model, mode=compile_mode) if compile_mode else model
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, device=device, generator=gen)
    y = torch.randint(0, 10, (images,), device=device, generator=gen)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    cast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    batches = iter(())

    def step() -> None:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(iterate_batches(x, y, batch, shuffle=True, augment=True, mean=mean, std=std,
                                           generator=gen, drop_last=True))
            xb, yb = next(batches)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with cast():
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clip_gates_(model)

    @torch.no_grad()
    def eval_pass(n: int, eval_batch: int = 256) -> None:
        model.eval()
        for s in range(0, n, eval_batch):
            xb = (x[s:s + eval_batch].float() / 255 - 0.5) / 0.25
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with cast():
                model(xb)
        model.train()

    return step, eval_pass


def time_steps(step, device, steps: int, repeats: int, warmup: int) -> dict:
    """Seconds of the first ``warmup`` steps (compilation) and the median seconds per step after them."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    first = time.perf_counter() - t0
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        samples.append((time.perf_counter() - t0) / steps)
    return {"warmup_s": first, "step_ms": 1000 * statistics.median(samples),
            "samples_ms": [1000 * s for s in samples]}


def resnet_steps(args, device, clock: Clock, plan: list[tuple[str, int, str]], out: dict) -> None:
    q = args.quick
    for norm, batch, mode in plan:
        key = f"{norm}/b{batch}/{mode}"
        if key in out:
            continue
        compiled = MODES[mode][0] is not None
        if mode.endswith("bf16_cl") and device.type == "cpu" and not q:
            continue
        if not clock.allows(f"resnet {key}", 60 if compiled else 5):
            continue
        steps = (1 if q else 50) if batch >= 64 else (2 if q else 300)
        try:
            # --quick: batches of 16 and 4 stand in for 128 and 8 (the script runs; nothing is measured)
            step, eval_pass = make_step(norm, QUICK_BATCH[batch] if q else batch, mode, device,
                                        256 if q else TRAIN_IMAGES)
            r = time_steps(step, device, steps, repeats=1 if q else 3, warmup=1 if q else (8 if compiled else 3))
            if batch >= 64:  # the validation pass, eager (the trainer's eval runs as fast or faster)
                n_eval = 64 if q else VAL_IMAGES
                eval_pass(min(n_eval, 512))
                _sync(device)
                t0 = time.perf_counter()
                eval_pass(n_eval)
                _sync(device)
                r["eval_10k_s"] = (time.perf_counter() - t0) * VAL_IMAGES / n_eval
        except Exception as e:  # noqa: BLE001 - a mode this machine cannot run is a result too
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        out[key] = r
        shown = r.get("error") or f"{r['step_ms']:.2f} ms/step (warm-up {r['warmup_s']:.1f} s)"
        print(f"  resnet {key:28s} {shown}", flush=True)


def resnet_fit_check(args, device, clock: Clock, defaults: dict) -> dict:
    """A real 2-epoch fit on real images with the GPU defaults: cold and warm epoch seconds."""
    from normlab import files
    from normlab.train.resnet import ResNetConfig, fit

    if not args.cifar:
        return {"skipped": "no --cifar given"}
    if not clock.allows("resnet fit (2 epochs, real images)", 90):
        return {"skipped": "time budget"}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ResNetConfig(norm="bn", epochs=2, data=args.cifar, device=str(device), out=tmp,
                           batch_size=32 if args.quick else 128,
                           limit_train=512 if args.quick else None, val_size=256 if args.quick else 10000,
                           compile=defaults["compile"], channels_last=defaults["channels_last"],
                           bf16=defaults["bf16"], label_smoothing=0.1, warmup_epochs=1)
        t0 = time.perf_counter()
        summary = fit(cfg, progress=False)
        total = time.perf_counter() - t0
        recs = files.read_jsonl(Path(tmp) / files.METRICS)
        sizes = files.read_json(Path(tmp) / files.CONFIG)["data"]["sizes"]
    r = {"settings": defaults, "images": sizes,
         "epoch_s": [rec["seconds"] for rec in recs], "total_s": total, "status": summary["status"],
         "compiled": summary["compiled"], "val_accuracy": [rec["val_accuracy"] for rec in recs],
         "train_loss": [rec["train_loss"] for rec in recs]}
    print(f"  resnet fit: epochs {', '.join(f'{s:.1f}' for s in r['epoch_s'])} s, whole run {total:.1f} s, "
          f"val accuracy {r['val_accuracy'][-1]:.3f}", flush=True)
    return r


NER_KINDS = {  # the kinds timed (flags), and the study's variants each stands for (by ``ner_kind``)
    "plain": ({"char": False, "crf": False, "layer_norm": False}, ("random", "random50", "glove")),
    "char_crf": ({"char": True, "crf": True, "layer_norm": False}, ("glove_char", "crf", "crf_free")),
    "char_ln_crf": ({"char": True, "crf": True, "layer_norm": True}, ("glove_char_ln", "crf_ln")),
}


def ner_kind(overrides: dict) -> str:
    """The timed kind that stands for a grid variant: by its layer norm and characters (any embeddings, the
    rescaled GloVe variants included; a softmax head with characters is timed as the CRF kind)."""
    if overrides.get("layer_norm"):
        return "char_ln_crf"
    return "char_crf" if overrides.get("char") else "plain"


def ner_epochs(args, device, clock: Clock) -> dict:
    from normlab.train import ner

    if not args.gmb:
        return {"skipped": "no --gmb given"}
    out = {}
    for kind, (flags, _) in list(NER_KINDS.items())[-1:] if args.quick else NER_KINDS.items():
        if not clock.allows(f"ner epoch {kind}", 60):
            out[kind] = {"skipped": "time budget"}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ner.NERConfig(data=[args.gmb], out=tmp, epochs=1, word_dim=50, device=str(device),
                                eval_every=4 if args.quick else 100, train_eval_size=100 if args.quick else 2000,
                                limit_train=300 if args.quick else None, limit_eval=100 if args.quick else None,
                                **flags)
            t0 = time.perf_counter()
            s = ner.fit(cfg, progress=False)
            total = time.perf_counter() - t0
        out[kind] = {"epoch_s": s["seconds"], "train_s": s["seconds_per_epoch"], "whole_run_s": total,
                     "updates": s["updates"]}
        print(f"  ner {kind:12s} epoch {s['seconds']:.1f} s (training {s['seconds_per_epoch']:.1f} s), "
              f"whole run {total:.1f} s", flush=True)
    return out


def worker(args) -> None:
    """One of K processes sharing the device: count steps of each batch size in a common window.

    Both steps are built and warmed up (compiled) before the first window opens."""
    device = torch.device(args.device)
    steps = {}
    for batch in (128, 8):
        step, _ = make_step("bn", QUICK_BATCH[batch] if args.quick else batch, args.mode, device,
                            256 if args.quick else TRAIN_IMAGES)
        for _ in range(3):
            step()
        steps[batch] = step
    _sync(device)
    res = {}
    for batch, start in ((128, args.start_at), (8, args.start_at + args.seconds + 2)):
        while time.time() < start:
            time.sleep(0.005)
        n = 0
        while time.time() < start + args.seconds:
            steps[batch]()
            n += 1
        _sync(device)
        res[f"b{batch}"] = max(n, 1) / (time.time() - start)  # a step under way at the window's end counts
    print(json.dumps(res), flush=True)


def sharing(args, device, clock: Clock, mode: str) -> dict:
    ks = (1, 2) if args.quick else (1, 2, 4, 8)
    seconds = 2.0 if args.quick else 5.0
    out = {"mode": mode, "norm": "bn", "window_s": seconds}
    for k in ks:
        if not clock.allows(f"sharing K={k}", 2 * seconds + (70 if MODES[mode][0] else 25)):
            continue
        compiled = MODES[mode][0] is not None
        start = time.time() + (60 if compiled else 15)  # every worker imports torch (and compiles) first
        cmd = [sys.executable, __file__, "--worker", "--device", str(device), "--mode", mode,
               "--start-at", str(start), "--seconds", str(seconds)] + (["--quick"] if args.quick else [])
        env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS=str(max(1, (os.cpu_count() or 1) // k)))
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(k)]
        rates = []
        for p in procs:
            stdout, _ = p.communicate(timeout=300)
            if p.returncode == 0:
                rates.append(json.loads(stdout.strip().splitlines()[-1]))
        if len(rates) != k:
            out[f"K={k}"] = {"error": f"{k - len(rates)} worker(s) failed"}
            continue
        out[f"K={k}"] = {b: sum(r[b] for r in rates) for b in ("b128", "b8")}
        print(f"  sharing K={k}: " + ", ".join(f"{b} {v:.1f} steps/s in all" for b, v in out[f"K={k}"].items()),
              flush=True)
    base = out.get("K=1")
    if base and "error" not in base:
        for k in ks:
            r = out.get(f"K={k}")
            if r and "error" not in r:
                r["speedup"] = {b: r[b] / base[b] for b in ("b128", "b8")}
    return out


def best_mode(steps: dict, norm: str, batch: int) -> tuple[str, dict] | None:
    found = [(r["step_ms"], m, r) for k, r in steps.items()
             for m in [k.split("/")[2]] if k.startswith(f"{norm}/b{batch}/") and "step_ms" in r]
    return (min(found)[1], min(found)[2]) if found else None


def wall_time(runs: list[tuple[float, float]], k: int) -> float:
    """Wall time of runs (alone-seconds, aggregate speed-up of k sharing the GPU) done k at a time.

    The work divided by the speed-up, but never less than the longest run as it goes when
    sharing (k / speed-up times slower than alone): a run cannot be split across slots.
    """
    work = sum(t / s for t, s in runs)
    return max(work, max(t * k / s for t, s in runs))


def estimates(steps: dict, ner: dict, share: dict, device) -> dict:
    """Wall time of the full studies from the measurements (None where something is missing)."""
    from normlab.study.budgets import NER_FULL_EPOCHS, RESNET_FULL_EPOCHS
    from normlab.study.grids import SANITY_VARIANTS, ner_variants, resnet_variants

    runs, missing = [], []
    for v in resnet_variants():
        norm, batch = v.overrides["norm"], v.overrides["batch_size"]
        found = best_mode(steps, norm, batch)
        evals = [r.get("eval_10k_s") for k, r in steps.items() if k.startswith(f"{norm}/b128/") and "eval_10k_s" in r]
        if found is None or not evals:
            missing.append(v.name)
            continue
        mode, r = found
        epoch = (TRAIN_IMAGES // batch) * r["step_ms"] / 1000 + min(evals)
        seeds = 3 if v.name in SANITY_VARIANTS else 1
        runs += [{"variant": v.name, "mode": mode, "epoch_s": epoch,
                  "run_s": RESNET_FULL_EPOCHS * epoch + r["warmup_s"], "batch": batch}] * seeds
    out = {"resnet": {"epochs": RESNET_FULL_EPOCHS, "runs": len(runs), "missing": missing,
                      "per_variant": {r["variant"]: {k: r[k] for k in ("mode", "epoch_s", "run_s")} for r in runs}}}
    if runs and not missing:
        serial = sum(r["run_s"] for r in runs)
        out["resnet"]["one_at_a_time_s"] = serial
        out["resnet"]["by_k"] = {}
        for k, r in share.items():
            if k.startswith("K=") and "speedup" in r:
                out["resnet"]["by_k"][k] = wall_time([(x["run_s"], r["speedup"][f"b{x['batch']}"]) for x in runs],
                                                     int(k[2:]))
    ner_runs, ner_missing = [], []
    for v in ner_variants():
        kind = ner_kind(v.overrides)
        e = ner.get(kind, {}) if isinstance(ner, dict) else {}
        if "epoch_s" not in e:
            ner_missing.append(v.name)
            continue
        ner_runs.append(NER_FULL_EPOCHS * e["epoch_s"])
    out["ner"] = {"epochs_cap": NER_FULL_EPOCHS, "runs": len(ner_runs), "missing": ner_missing}
    if ner_runs and not ner_missing:
        out["ner"]["one_at_a_time_s"] = sum(ner_runs)
        speed = [r["speedup"]["b8"] for k, r in share.items() if k.startswith("K=") and "speedup" in r]
        best = max(((r["speedup"]["b8"], int(k[2:])) for k, r in share.items()
                    if k.startswith("K=") and "speedup" in r), default=None)
        if best:  # NER steps are launch-bound like batch-8 ResNet steps: their best K's speed-up
            out["ner"]["best_k"] = best[1]
            out["ner"]["best_k_s"] = wall_time([(t, best[0]) for t in ner_runs], best[1])
    return out


def choose_defaults(steps: dict, device) -> dict:
    """The fastest measured settings for batch 128 (bn), used for the real fit and recorded as GPU defaults."""
    found = best_mode(steps, "bn", 128) or ("compiled_cl", None)
    compile_mode, channels_last, bf16 = MODES[found[0]]
    return {"compile": "on" if compile_mode else "off", "channels_last": channels_last, "bf16": bf16,
            "from_mode": found[0]}


def environment(device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count,
                   cuda=torch.version.cuda)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def table(result: dict) -> str:
    lines = ["| norm | batch | mode | ms/step | epoch (s) |", "| --- | ---: | --- | ---: | ---: |"]
    for key, r in result["resnet_steps"].items():
        norm, b, mode = key.split("/")
        batch = int(b[1:])
        if "step_ms" in r:
            lines.append(f"| {norm} | {batch} | {mode} | {r['step_ms']:.2f} | "
                         f"{(TRAIN_IMAGES // batch) * r['step_ms'] / 1000:.1f} |")
        else:
            lines.append(f"| {norm} | {batch} | {mode} | {r.get('error', '-')} | |")
    est = result["estimates"]
    lines.append("")
    for study in ("resnet", "ner"):
        e = est.get(study, {})
        if "one_at_a_time_s" in e:
            ks = e.get("by_k") or ({f"K={e['best_k']}": e["best_k_s"]} if "best_k_s" in e else {})
            more = ", ".join(f"{k}: {v / 60:.1f} min" for k, v in ks.items())
            lines.append(f"{study} study estimate: {e['one_at_a_time_s'] / 60:.1f} min one run at a time"
                         + (f"; {more}" if more else ""))
        else:
            lines.append(f"{study} study estimate: not available (missing {', '.join(e.get('missing', [])) or '-'})")
    return "\n".join(lines)


def _relative(arg: str) -> str:
    """An existing path as relative to the current folder: the JSON names no path of this machine."""
    return os.path.relpath(arg) if os.path.exists(arg) else arg


def _command(argv: list[str]) -> str:
    """The command line, paths made relative and --out left out (it may be a scratch folder of the machine)."""
    kept, skip = [], False
    for a in argv:
        if skip or a == "--out":
            skip = a == "--out"
            continue
        if not a.startswith("--out="):
            kept.append(_relative(a))
    return "python benchmarks/gpu.py " + " ".join(kept)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI: proves the script runs, measures nothing)")
    ap.add_argument("--cifar", default=None, help="CIFAR-10 (any form normlab reads) for the real fit check")
    ap.add_argument("--gmb", default=None, help="the GMB corpus for the NER epochs")
    ap.add_argument("--out", default=None, help="JSON file to write (default benchmarks/results/gpu-DATE.json)")
    ap.add_argument("--max-seconds", type=float, default=420, help="stop starting measurements after this (default 420)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="eager_bf16_cl", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA GPU here (use --device cpu --quick to check the script)")
    torch.backends.cudnn.benchmark = True
    clock = Clock(args.max_seconds)
    env = environment(device)
    print(f"GPU check on {env.get('gpu', env.get('cpu'))}, torch {env['torch']}", flush=True)
    steps: dict = {}
    # In order of importance (the first H200 check ran out of its budget after the eager rows):
    # 1: the trainer's GPU defaults for every run of the grid (compiled fp32 NHWC; CUDA graphs at batch 8)
    first = [(n, 128, "compiled_cl") for n in NORMS] + [(n, 8, "graphs_cl") for n in ("bn", "gn")]
    # 2: the eager references: torch_bn eager is what a plain PyTorch loop runs
    second = [(n, 128, "eager") for n in NORMS] + [("bn", 8, "eager"), ("gn", 8, "eager")]
    if args.quick:
        first, second = [("bn", 128, "compiled_cl")], [("torch_bn", 128, "eager"), ("bn", 128, "eager"),
                                                       ("bn", 8, "eager")]
    resnet_steps(args, device, clock, first, steps)
    resnet_steps(args, device, clock, second, steps)
    defaults = choose_defaults(steps, device)
    if args.quick:  # the CPU has no bf16 speed-up and compiling takes minutes there
        defaults = {"compile": "off", "channels_last": False, "bf16": False, "from_mode": "eager"}
    out = Path(args.out or Path(__file__).resolve().parent / "results" / f"gpu-{env['date']}.json")
    result = {"env": env, "quick": args.quick, "resnet_steps": steps, "defaults": defaults,
              "command": _command(argv or sys.argv[1:])}

    def save() -> None:  # after every stage: a lease that ends early still leaves what was measured
        result.update(skipped=clock.skipped, seconds=clock.elapsed())
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)

    save()
    result["resnet_fit"] = resnet_fit_check(args, device, clock, defaults)
    save()
    result["ner_epochs"] = ner = ner_epochs(args, device, clock)
    save()
    result["sharing"] = share = sharing(args, device, clock, "compiled_cl" if device.type == "cuda" else "eager")
    save()
    # 3: bf16 and the other layouts, as time allows (bf16 lost to fp32 on the H200: 9.4 against 5.9 ms)
    if not args.quick:
        resnet_steps(args, device, clock, [(n, 128, "eager_bf16_cl") for n in NORMS]
                     + [("bn", 128, "compiled_bf16_cl"), ("bn", 8, "graphs_bf16_cl")], steps)
    result["estimates"] = estimates(steps, ner, share, device)
    save()
    print("\n" + table(result))
    print(f"\nwritten to {out} ({clock.elapsed():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
