"""The GPU check: the paper recipes at full size on whatever device is there, in one command, into one record.

    python -m benchmarks.gpu                       # cuda if available, else cpu; record in benchmarks/results/gpu/
    python -m benchmarks.gpu --steps 30 --out DIR  # the record goes into DIR instead (30 steps: the default)
    python -m benchmarks.gpu --smoke               # the same path with tiny backbones on CPU (a test runs it)
    python -m benchmarks.gpu --estimate-memory     # CPU estimate of each recipe's training memory at batch 32
    python -m benchmarks gpu ...                   # the same, through the benchmarks dispatcher

What it does, in order:
1. writes a tiny synthetic ScanObjectNN PB_T50_RS in the official h5 layout (main_split/*.h5, 2,048 points per
   cloud, four shape classes a model can fit) into a temporary folder;
2. for each paper recipe (train/configs/scanobjectnn_{dinov2b,clipl,ast}.toml) runs the user's command,
   `python -m train.run --config <recipe> --max-steps N --data-root <synthetic>`, in its own process (a crash or an
   out-of-memory is recorded, the check goes on), with `--variant random_backbone`: the backbone is the recipe's
   architecture at full size (DINOv2 ViT-B/14 at 518 px, CLIP ViT-L/14 text, AST 12 x 101) built with random
   weights and nothing downloaded (zoo.specs.ARCHITECTURES); --pretrained uses the Hub weights instead. Batch size,
   tokenizer, adapters and schedule are the recipe's; bf16 autocast where the device supports it;
3. times `predict` of the shipped zoo entries on the device and on the CPU (entries whose packaged backbone is not
   installed are recorded as skipped, with the reason);
4. with more than one GPU (or --processes N), repeats the first recipe under
   `accelerate launch --multi_gpu --num_processes N` and checks that every process trained;
5. writes one JSON record.

--smoke swaps each backbone for a small random transformer of the same positional kind (scratch:2d / scratch:1d),
and shrinks the batch, clouds and tokenizer (two steps per epoch, as at full size), so the whole path runs on a CPU
in about a minute. Its record goes to a temporary folder unless --out names one: smoke records are not committed.

On a lent device machine (no network; the working tree is copied there, Python packages are not: the image's own
python3 must already hold torch, timm, transformers, accelerate, h5py, safetensors and huggingface_hub, else they
travel as wheels), the prepared command and its budget are in benchmarks/results/gpu/README.md.

Record (`<date>-<device>.json`; format_version 1):
    kind, format_version, created (UTC ISO), command (argv), smoke, seconds (the whole check)
    device      type (cuda | cpu), name, count, memory_gb, capability, torch, cuda, cudnn, bf16, python,
                cpu_count, packages {timm, transformers, accelerate}
    settings    steps, mixed_precision, variant, pretrained, synthetic {train, test, points, classes}
    memory_goal official_gb 26 (the paper's language model), goal_gb 13 (half of it), batch_size 32, and per
                recipe whether its device_used_peak_mb met it (null on a CPU or in a smoke run: no measurement)
    recipes     {name: {recipe, backbone, ok, error?, wall_s, steps, epochs_run, batch_size, trainable_parameters,
                 total_parameters, step_s (median over epochs after the first, per optimiser step),
                 first_epoch_s (with warm-up), clouds_per_s (median, same epochs), peak_mb (cuda: the trainer's
                 torch.cuda.max_memory_allocated; cpu: the process's max RSS), device_used_peak_mb (cuda: the most
                 memory in use on the GPU during the run above what was in use before, as nvidia-smi counts it:
                 CUDA context and allocator cache included; null on a CPU), losses (train loss per epoch),
                 loss_falls (mean of the last third of the epochs' losses below the mean of the first third; null
                 with one epoch), final_train_acc}}
    entries     {name: {cpu_ms, device_ms (median predict of one 2,048-point cloud), repeats} or {skipped: why}}
    multi_gpu   null with fewer than 2 devices, else {processes, ok, error?, wall_s, steps (per process), step_s,
                 clouds_per_s, peak_mb, clouds (trained, all processes), expected_clouds (processes x batch x
                 steps), every_process_trained}
Every number is measured by the run that writes the record; nothing is filled in by hand.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu"
# name -> (paper recipe, the --smoke backbone: a small random transformer of the recipe's positional kind)
RECIPES = {
    "dinov2b": ("train/configs/scanobjectnn_dinov2b.toml", "scratch:2d"),
    "clipl": ("train/configs/scanobjectnn_clipl.toml", "scratch:1d"),
    "ast": ("train/configs/scanobjectnn_ast.toml", "scratch:2d"),
}
# --smoke: the recipe, smaller everywhere (batch, clouds, Point-PN stages, voting)
SMOKE_FLAGS = ["--batch-size", "8", "--limit-batches", "2", "--points", "256", "--votes", "1",
               "--set", "model.pointpn_stages=[128,64]",
               "--set", "model.num_tokens=32", "--set", "model.k=16"]
OFFICIAL_GB, GOAL_GB = 26, 13  # the paper's memory for its language model; our goal: at most half, at batch 32
CLASSES = ("sphere", "cube", "cylinder", "cone")  # ScanObjectNN labels 0..3 of its 15
POINTS = 2048  # per cloud, as in the official files (the recipes resample from 2,048)


def write_synthetic_scanobjectnn(root, train=80, test=16, seed=0):
    """A tiny ScanObjectNN PB_T50_RS under root/main_split/: four surface shapes, noisy and anisotropically scaled.
    80 training clouds leave 72 after the loader's 10% val carve: two steps of 32 per epoch. -> root"""
    import h5py
    import numpy as np
    rng = np.random.default_rng(seed)

    def cloud(label):
        p = rng.normal(size=(POINTS, 3))
        if label == 0:  # sphere
            p /= np.linalg.norm(p, axis=1, keepdims=True)
        elif label == 1:  # cube
            p /= np.abs(p).max(axis=1, keepdims=True)
        else:  # cylinder (label 2) or cone (label 3) along y, with caps
            t, h = rng.uniform(0, 2 * np.pi, POINTS), rng.uniform(-1, 1, POINTS)
            r = np.ones(POINTS) if label == 2 else (1 - h) / 2
            cap = rng.random(POINTS) < 0.2
            r[cap] *= np.sqrt(rng.random(cap.sum()))
            h[cap] = -1.0 if label == 3 else np.where(rng.random(cap.sum()) < 0.5, -1.0, 1.0)
            p = np.stack([r * np.cos(t), h, r * np.sin(t)], axis=1)
        p = p * rng.uniform(0.7, 1.3, size=3) + rng.normal(scale=0.01, size=p.shape)
        return p.astype(np.float32)

    (Path(root) / "main_split").mkdir(parents=True, exist_ok=True)
    for split, n in (("training", train), ("test", test)):
        labels = np.arange(n) % len(CLASSES)
        with h5py.File(Path(root) / f"main_split/{split}_objectdataset_augmentedrot_scale75.h5", "w") as f:
            f["data"] = np.stack([cloud(y) for y in labels])
            f["label"] = labels.astype(np.int64)
    return Path(root)


def device_info():
    import torch
    info = dict(type="cuda" if torch.cuda.is_available() else "cpu", torch=torch.__version__, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                python=platform.python_version(), cpu_count=os.cpu_count(), packages={})
    for name in ("timm", "transformers", "accelerate"):
        try:
            info["packages"][name] = __import__(name).__version__
        except ImportError:
            info["packages"][name] = None
    if info["type"] == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, count=torch.cuda.device_count(), memory_gb=round(props.total_memory / 1e9, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    else:
        from benchmarks.speed import cpu_name
        info.update(name=cpu_name(), count=0, memory_gb=None, capability=None, bf16=False)
    return info


def train_command(recipe, data_root, out_dir, steps, smoke, pretrained, mixed_precision):
    """The user's training command for one recipe (argv after `python -m train.run`)."""
    config, smoke_backbone = RECIPES[recipe]
    argv = ["--config", str(ROOT / config), "--data-root", str(data_root), "--output-dir", str(out_dir),
            "--max-steps", str(steps), "--mixed-precision", mixed_precision, "--name", f"gpu-check-{recipe}"]
    if not pretrained:
        argv += ["--variant", "random_backbone"]
    if smoke:
        argv += ["--backbone", smoke_backbone, *SMOKE_FLAGS]
    return argv


def _env(pretrained, **extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               TOKENIZERS_PARALLELISM="false", **extra)
    if not pretrained:  # nothing to download: fail at once rather than wait on an unreachable Hub
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _run(cmd, env, timeout, log_path):
    """-> (ok, error or None, wall seconds, stdout). stdout and stderr also go to log_path."""
    t0 = time.perf_counter()
    # its own process group: on a timeout the launcher's workers go too, not only the launcher
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        error = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        error = f"timed out after {timeout} s"
    Path(log_path).write_text(stdout + "\n--- stderr ---\n" + stderr)
    if error is None and proc.returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        error = f"exit {proc.returncode}: " + " | ".join(lines[-3:])
    return error is None, error, time.perf_counter() - t0, stdout


def read_epochs(out_dir):
    """The trainer's log.csv, one dict per epoch, with the columns the record uses."""
    with open(Path(out_dir) / "log.csv", newline="") as f:
        return [{k: float(row[k]) for k in ("epoch", "train_loss", "train_acc", "seconds", "clouds_per_s")}
                for row in csv.DictReader(f)]


def loss_falls(losses):
    """Mean of the last third of the losses below the mean of the first third (None with fewer than 2 values)."""
    if len(losses) < 2:
        return None
    third = max(1, len(losses) // 3)
    return statistics.fmean(losses[-third:]) < statistics.fmean(losses[:third])


def summarise_run(out_dir, stdout, batch_size):
    """result.json + log.csv + the trainer's printout of one run -> the record's numbers."""
    result = json.loads((Path(out_dir) / "result.json").read_text())
    epochs = read_epochs(out_dir)
    for e in epochs:  # clouds_per_s * seconds = the clouds of the epoch, over all processes
        e["clouds"] = round(e["clouds_per_s"] * e["seconds"])
        e["steps"] = max(1, round(e["clouds"] / (batch_size * result["processes"])))
    steady = epochs[1:] or epochs  # the first epoch holds the warm-up (allocator, cuDNN and kernel selection)
    params = re.search(r"trainable parameters ([\d,]+)(?: of ([\d,]+))?", stdout)
    losses = [e["train_loss"] for e in epochs]
    return dict(steps=result["steps"], epochs_run=len(epochs), batch_size=batch_size,
                trainable_parameters=result["trainable_parameters"],
                total_parameters=int(params.group(2).replace(",", "")) if params and params.group(2) else None,
                step_s=statistics.median(e["seconds"] / e["steps"] for e in steady),
                first_epoch_s=epochs[0]["seconds"], clouds_per_s=statistics.median(e["clouds_per_s"] for e in steady),
                peak_mb=result["peak_mb"], losses=[round(x, 4) for x in losses], loss_falls=loss_falls(losses),
                final_train_acc=epochs[-1]["train_acc"], processes=result["processes"],
                clouds_per_epoch=[e["clouds"] for e in epochs])


def check_recipe(recipe, data_root, work, args, mixed_precision):
    out = Path(work) / f"run-{recipe}"
    argv = train_command(recipe, data_root, out, args.steps, args.smoke, args.pretrained, mixed_precision)
    cmd = [sys.executable, "-m", "train.run", *argv]
    print(f"[gpu check] {recipe}: {' '.join(cmd[1:])}", flush=True)
    env = _env(args.pretrained, **({"CUDA_VISIBLE_DEVICES": ""} if args.smoke else {}))  # smoke: the CPU, always
    with DeviceMemoryWatch(enabled=not args.smoke) as watch:
        ok, error, wall, stdout = _run(cmd, env, args.recipe_timeout, Path(work) / f"{recipe}.log")
    row = dict(recipe=RECIPES[recipe][0], backbone=_flag(argv, "--backbone") or _recipe_backbone(recipe), ok=ok,
               wall_s=round(wall, 1), device_used_peak_mb=watch.peak_mb)
    if not ok:
        return dict(row, error=error)
    batch = int(_flag(argv, "--batch-size") or _recipe_value(recipe, "batch_size"))
    row.update(summarise_run(out, stdout, batch))
    row.pop("processes")
    row.pop("clouds_per_epoch")
    return row


class DeviceMemoryWatch:
    """The most memory in use on GPU 0 while a child process runs, as nvidia-smi counts it (the child's CUDA
    context and everything its allocator holds), above what was in use before: sampled every 50 ms from NVML
    (which sees every process and opens no CUDA context here), else cudaMemGetInfo. peak_mb stays None without a
    GPU."""

    def __init__(self, enabled=True, every=0.05):
        import torch
        self.enabled = enabled and torch.cuda.is_available()
        self.every, self.peak_mb, self._stop = every, None, None
        self._nvml = None
        if self.enabled:
            try:
                import pynvml
                pynvml.nvmlInit()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
            except Exception:  # no nvidia-ml-py, or no NVML library: torch's view of the same numbers
                self._nvml = None

    def _used(self):
        if self._nvml:
            nvml, handle = self._nvml
            return nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        import torch
        free, total = torch.cuda.mem_get_info(0)
        return (total - free) / 2**20

    def __enter__(self):
        if self.enabled:
            import threading
            base, self._stop, peak = self._used(), threading.Event(), [0.0]

            def poll():
                while not self._stop.wait(self.every):
                    peak[0] = max(peak[0], self._used() - base)
            self._peak, self._thread = peak, threading.Thread(target=poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self.peak_mb = round(self._peak[0])
        return False


def check_processes(recipe, n, data_root, work, args, mixed_precision, on_gpu):
    """The first recipe under `accelerate launch` with n processes: every process must have trained its share."""
    out = Path(work) / f"run-{recipe}-x{n}"
    argv = train_command(recipe, data_root, out, args.steps, args.smoke, args.pretrained, mixed_precision)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --multi_gpu starts n local processes (torchrun); on a CPU, ACCELERATE_USE_CPU makes them gloo processes
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "-m", "train.run", *argv]
    extra = {} if on_gpu else dict(ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    print(f"[gpu check] {recipe} on {n} processes: {' '.join(cmd[1:])}", flush=True)
    ok, error, wall, stdout = _run(cmd, _env(args.pretrained, **extra), args.recipe_timeout,
                                   Path(work) / f"{recipe}-x{n}.log")
    row = dict(processes=n, ok=ok, wall_s=round(wall, 1))
    if not ok:
        return dict(row, error=error)
    batch = int(_flag(argv, "--batch-size") or _recipe_value(recipe, "batch_size"))
    s = summarise_run(out, stdout, batch)
    # the engine sums the clouds of all processes into each epoch's row; every process takes the same steps (per
    # process), so n processes that all trained show exactly n x batch x steps clouds, one that did not a shortfall
    clouds, expected = sum(s["clouds_per_epoch"]), n * batch * s["steps"]
    every = s["processes"] == n and clouds == expected
    row.update(steps=s["steps"], step_s=s["step_s"], clouds_per_s=s["clouds_per_s"], peak_mb=s["peak_mb"],
               clouds=clouds, expected_clouds=expected, every_process_trained=every)
    row["ok"] = ok and every
    return row


def _flag(argv, name):
    """The value of the last `name` flag in argv, or None."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    return values[-1] if values else None


def _recipe_value(recipe, key):
    import tomllib
    return tomllib.loads((ROOT / RECIPES[recipe][0]).read_text())[key]


def _recipe_backbone(recipe):
    return _recipe_value(recipe, "backbone")


def estimate_memory(recipe, batches=(2, 4), target=32, precisions=("bf16", "fp32")):
    """CPU estimate of one paper recipe's training memory at batch `target`, before any GPU: the bytes autograd
    saves for the backward pass (activations, the autocast copies of the weights), counted once per storage, at two
    small batches and extrapolated linearly, plus the parameters. Excludes the backward's transient buffers and the
    allocator's slack, so a GPU's peak is higher; it says how the memory splits and where it grows."""
    import torch
    import torch.nn.functional as F

    from core.points import normalize
    from train import run
    cfg = run.resolve(run.parse_args(["--config", str(ROOT / RECIPES[recipe][0]), "--variant", "random_backbone"]))
    model = run.build_model(cfg, [str(i) for i in range(15)])[0].train()

    def saved(fn, b, dtype):
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        cloud = torch.randn(b, cfg.points, 3, generator=torch.Generator().manual_seed(b))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            fn(cloud)
        return sum(storages.values())

    def step(cloud):
        F.cross_entropy(model(cloud).float(), torch.zeros(len(cloud), dtype=torch.long)).backward()
        model.zero_grad(set_to_none=True)

    params = list(model.parameters())
    row = dict(batch_size=target, parameters=sum(p.numel() for p in params), trainable_parameters=model.num_trainable(),
               parameters_gb=round(sum(p.numel() * p.element_size() for p in params) / 1e9, 3))
    for dtype in precisions:
        small, large = (saved(step, b, dtype) for b in batches)
        per_cloud = (large - small) / (batches[1] - batches[0])
        tok = (saved(lambda c: model.tokenizer(normalize(c)), batches[1], dtype)
               - saved(lambda c: model.tokenizer(normalize(c)), batches[0], dtype)) / (batches[1] - batches[0])
        row[dtype] = dict(saved_mib_per_cloud=round(per_cloud / 2**20, 1),
                          tokenizer_mib_per_cloud=round(tok / 2**20, 1),
                          batch_independent_mib=round((small - batches[0] * per_cloud) / 2**20),
                          estimate_gb=round((small + (target - batches[0]) * per_cloud) / 1e9
                                            + row["parameters_gb"], 2))
    return row


def time_entries(device, names, repeats):
    """Median `predict` time of each named zoo entry on the CPU and on `device` (one 2,048-point cloud)."""
    import torch

    from zoo import list_models, load_model
    rows = {r["name"]: r for r in list_models() if r["trained"]}
    cloud = write_cloud()
    out = {}
    for name in names:
        row = rows.get(name)
        if row is None:
            out[name] = dict(skipped=f"not a trained entry; known: {', '.join(rows)}")
            continue
        if not row["available"]:
            out[name] = dict(skipped=row["reason"])
            continue
        times = {}
        for where in dict.fromkeys(["cpu", device]):  # once on a CPU-only machine
            model = load_model(name, device=where)
            for _ in range(2):  # warm-up: first-call allocations, kernel selection
                model.predict(cloud, up="y")
            ms = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.predict(cloud, up="y")  # returns Python floats: the device work is finished
                ms.append((time.perf_counter() - t0) * 1000)
            times[f"{'cpu' if where == 'cpu' else 'device'}_ms"] = round(statistics.median(ms), 2)
        times.setdefault("device_ms", times["cpu_ms"] if device == "cpu" else None)
        out[name] = dict(times, repeats=repeats)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def write_cloud():
    import torch
    g = torch.Generator().manual_seed(0)
    p = torch.randn(POINTS, 3, generator=g)
    return p / p.abs().amax(dim=1, keepdim=True)  # a cube's surface


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per recipe (default 30: two per epoch on "
                   "the synthetic data, so 15 epoch losses for the trend; 2 or fewer: one epoch, no trend)")
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES), help="which paper recipes")
    p.add_argument("--entries", nargs="*", help="zoo entries to time (default: every trained entry; none: skip)")
    p.add_argument("--repeats", type=int, default=20, help="timed predict calls per entry and device")
    p.add_argument("--processes", type=int, help="also run the first recipe under accelerate launch with this many "
                   "processes (default: the number of GPUs when there are several, else skipped)")
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16"], default="auto", help="auto: bf16 on a GPU "
                   "that supports it, else fp32; bf16 on a CPU runs the autocast path there (slower, for tests)")
    p.add_argument("--smoke", action="store_true", help="tiny backbones and batches on the CPU: the same path, "
                   "in about a minute (its numbers say nothing about a GPU)")
    p.add_argument("--pretrained", action="store_true", help="train from the recipes' Hub weights (downloads) "
                   "instead of random weights of the same architectures")
    p.add_argument("--recipe-timeout", type=int, default=150, help="seconds before one training run is stopped")
    p.add_argument("--out", help="folder for the record (default: benchmarks/results/gpu/; --smoke: a temporary "
                   "folder, never the committed records)")
    p.add_argument("--estimate-memory", action="store_true", help="instead of the check: estimate each paper "
                   "recipe's training memory at batch 32 on the CPU (estimate_memory) and print it as JSON")
    p.add_argument("--keep", action="store_true", help="keep the synthetic data and the runs (printed path)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    return args


def check(argv=None):
    """-> (record, its path, ok): ok when every run trained (the loss trend is reported, not required)."""
    args = parse_args(argv)
    if args.estimate_memory:
        estimate = {r: estimate_memory(r) for r in args.recipes}
        print(json.dumps(estimate, indent=1), flush=True)
        return estimate, None, True
    t_start = time.perf_counter()
    info = device_info()
    on_gpu = info["type"] == "cuda" and not args.smoke
    mixed_precision = args.mixed_precision
    if mixed_precision == "auto":
        mixed_precision = "bf16" if on_gpu and info["bf16"] else "no"
    device = "cuda" if on_gpu else "cpu"
    work = Path(tempfile.mkdtemp(prefix="any2point-gpu-check-"))
    data = write_synthetic_scanobjectnn(work / "scanobjectnn")
    print(f"[gpu check] {info['name']} ({info['type']}), torch {info['torch']}, cuda {info['cuda']}; "
          f"mixed precision {mixed_precision}; work folder {work}", flush=True)

    recipes = {r: check_recipe(r, data, work, args, mixed_precision) for r in args.recipes}
    goal_mb = GOAL_GB * 1e9 / 2**20
    memory_goal = dict(official_gb=OFFICIAL_GB, goal_gb=GOAL_GB, batch_size=32, met={
        r: (row["device_used_peak_mb"] <= goal_mb if on_gpu and row.get("ok") and row.get("batch_size") == 32
            and row["device_used_peak_mb"] is not None else None) for r, row in recipes.items()})

    entries, names = {}, args.entries
    if names is None:
        from zoo import list_models
        names = [r["name"] for r in list_models() if r["trained"]]
    if names:
        print(f"[gpu check] timing predict of {len(names)} entries on cpu and {device}", flush=True)
        entries = time_entries(device, names, args.repeats)

    n = args.processes if args.processes is not None else (info["count"] if on_gpu and info["count"] > 1 else 0)
    multi = check_processes(args.recipes[0], n, data, work, args, mixed_precision, on_gpu) if n > 1 else None

    record = dict(kind="gpu-check", format_version=1,
                  created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command=["python", "-m", "benchmarks.gpu", *(sys.argv[1:] if argv is None else argv)],
                  smoke=args.smoke, seconds=None, device=info,
                  settings=dict(steps=args.steps, mixed_precision=mixed_precision, pretrained=args.pretrained,
                                variant="any2point" if args.pretrained else "random_backbone",
                                synthetic=dict(train=80, test=16, points=POINTS, classes=list(CLASSES))),
                  memory_goal=memory_goal, recipes=recipes, entries=entries, multi_gpu=multi)
    record["seconds"] = round(time.perf_counter() - t_start, 1)
    folder = Path(args.out or (tempfile.mkdtemp(prefix="any2point-gpu-record-") if args.smoke else RESULTS))
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", (info["name"] or info["type"]).lower()).strip("-")
    path = folder / f"{record['created'][:10]}-{'smoke-' if args.smoke else ''}{slug}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    for log in sorted(work.glob("*.log")):  # a failed run's whole output, next to the record
        name = log.stem.split("-x")[0]
        failed = (recipes.get(name) or {}).get("ok") is False or log.stem.endswith(f"-x{n}") and not multi["ok"]
        if failed:
            (folder / f"{path.stem}-{log.name}").write_text(log.read_text())
    for r, row in recipes.items():
        if row["ok"]:
            print(f"[gpu check] {r}: {row['step_s']:.3f} s/step, {row['clouds_per_s']:.1f} clouds/s, "
                  f"peak {row['peak_mb']:.0f} MB, loss {row['losses'][0]:.3f} -> {row['losses'][-1]:.3f} "
                  f"(falls: {row['loss_falls']})", flush=True)
        else:
            print(f"[gpu check] {r}: FAILED {row['error']}", flush=True)
    if args.keep:
        print(f"[gpu check] runs and data kept in {work}")
    else:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu check] record: {path} ({record['seconds']} s)", flush=True)
    ok = all(row["ok"] for row in recipes.values()) and (multi is None or multi["ok"])
    return record, path, ok


def main(argv=None):
    """The command: exit status 0 when every run trained, 1 otherwise (python -m benchmarks gpu passes it on)."""
    return 0 if check(argv)[2] else 1


if __name__ == "__main__":
    sys.exit(main())
