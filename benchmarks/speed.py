"""Speed and memory of Any2Point on the packaged (offline) backbones: tokenizer, adapted vs bare forward, training.

    python benchmarks/speed.py                       # all packaged backbones, CPU (+ CUDA if available)
    python benchmarks/speed.py --quick               # CI: one backbone, 1k/2k points, tiny repeat counts
    python benchmarks/speed.py --backbones minilm-l6,dinov2-s14 --repeats 20 --device cuda

Measures, per backbone and device:
  * tokenizer time (FPS + kNN + MLPs on a normalised cloud) at 1k / 2k / 8k / 32k points, batch 1;
  * the adapted forward (2,048 points, batch 1) against the bare frozen backbone on the same tokens, timed
    interleaved in one run so machine load hits both alike: adapted (tokens -> logits) / bare, adapted / the same
    model with its adapters off (the adapters' own cost), end to end (points -> logits) / bare, and the
    tokenizer's share of the end-to-end forward;
  * training throughput (forward + backward + AdamW step on the trainable parameters, batch 16) at 1,024 and
    2,048 points, and peak memory (CUDA: max_memory_allocated; CPU: peak process RSS above the model at rest,
    sampled with psutil, or ru_maxrss when psutil is missing).
Prints markdown tables and writes them to --out (default benchmarks/SPEED.md; --quick prints only, unless --out is
given). Every number is measured here; absolute times depend on the machine and its load, the ratios much less. On
a busy machine pass --threads 1: torch's default of one thread per core thrashes when the cores are taken.
"""
import argparse
import ctypes
import datetime
import gc
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.specs import parse, short_name

ROOT = Path(__file__).resolve().parents[1]

PACKAGED = ("packaged:dinov2-s14", "packaged:minilm-l6", "packaged:whisper-tiny-en")
QUICK_BACKBONE = "packaged:whisper-tiny-en"  # the smallest (4 blocks)
NUM_CLASSES = 12


# --- timing ---------------------------------------------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn, device):
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def interleaved(fns, device, repeats, warmup=1):
    """{name: fn} -> {name: median seconds}; each repeat runs every fn once, in an order that alternates, so
    a change in machine load affects all of them alike."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    _sync(device)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            times[n].append(_time_once(fns[n], device))
    return {n: statistics.median(t) for n, t in times.items()}


# --- memory -----------------------------------------------------------------------------------------------------
def _trim():
    """Give freed heap back to the OS (glibc), so an RSS baseline is not inflated by the previous measurement."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block in MB. CUDA: torch.cuda.max_memory_allocated. CPU: peak process RSS above the RSS at
    entry, sampled every 2 ms by a thread (psutil), or the ru_maxrss increase (coarse: it never goes down)."""

    def __init__(self, device):
        self.device, self.mb, self.method = device, 0.0, ""

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        _trim()
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is None:
            self.method = "ru_maxrss increase (coarse)"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.proc = None
            return self
        self.method = "peak RSS above the model at rest (psutil)"
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop.wait(0.002)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return False
        if self.proc is None:
            self.mb = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base) / 2**20
            return False
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = (self.peak - self.base) / 2**20
        return False


# --- the measurements -------------------------------------------------------------------------------------------
def cloud(batch, n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, 3, generator=g).to(device)


def build(spec, device):
    from core import Any2Point
    from zoo import build_backbone
    backbone, _ = build_backbone(spec)
    torch.manual_seed(0)
    model = Any2Point(backbone, NUM_CLASSES, num_points=2048).to(device).eval()
    return model


def bench_tokenizer(model, device, sizes, repeats):
    from core.points import normalize
    rows = []
    with torch.no_grad():
        for n in sizes:
            xyz = normalize(cloud(1, n, device))
            t = interleaved({"tok": lambda: model.tokenizer(xyz)}, device, repeats)["tok"]
            rows.append(dict(points=n, tokens=model.tokenizer.num_tokens, ms=t * 1e3))
    return rows


def bench_forward(model, device, points, repeats):
    """Batch 1, one cloud. Forwards timed interleaved, all on the same tokens (the tokenizer's, for this cloud):
    bare = the frozen blocks alone (adapters off); adapted = Any2Point from those tokens to logits (projection, PE,
    both adapters, head); adapters off = the same, with both adapters switched off (what the adapters alone cost);
    end to end = from the points (adds normalisation and the tokenizer)."""
    from core.points import normalize
    bb = model.backbone
    pts = cloud(1, points, device)
    with torch.no_grad():
        tokens, centres = model.tokenizer(normalize(pts))
        seq = torch.cat([model.cls_token.expand(1, 1, -1), tokens], dim=1)  # (1, 1 + G, C)

    def bare():
        with model.bare():
            bb(seq)

    def adapters_off():
        with model.bare():
            model.forward_tokens(tokens, centres)

    with torch.no_grad():
        t = interleaved({"end_to_end": lambda: model(pts), "adapted": lambda: model.forward_tokens(tokens, centres),
                         "bare": bare, "adapters_off": adapters_off,
                         "tokenizer": lambda: model.tokenizer(normalize(pts))}, device, repeats)
    return dict(points=points, tokens=seq.shape[1], blocks=len(bb.blocks), width=bb.width,
                bare_ms=t["bare"] * 1e3, adapted_ms=t["adapted"] * 1e3, end_to_end_ms=t["end_to_end"] * 1e3,
                adapters_off_ms=t["adapters_off"] * 1e3, tokenizer_ms=t["tokenizer"] * 1e3,
                ratio=t["adapted"] / t["bare"], ratio_adapters=t["adapted"] / t["adapters_off"],
                ratio_end_to_end=t["end_to_end"] / t["bare"], tokenizer_share=t["tokenizer"] / t["end_to_end"])


def forward_table(rows):
    """Markdown rows for bench_forward results: [(label, result)]."""
    out = ["| backbone | blocks x width | points | tokens | bare ms | adapted ms (same tokens) | adapters off ms "
           "| end to end ms | adapted / bare | adapted / adapters off | end to end / bare | tokenizer share |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, f in rows:
        out.append(f"| {label} | {f['blocks']}x{f['width']} | {f['points']:,} | {f['tokens']} | {f['bare_ms']:.2f} | "
                   f"{f['adapted_ms']:.2f} | {f['adapters_off_ms']:.2f} | {f['end_to_end_ms']:.2f} | "
                   f"{f['ratio']:.2f}x | {f['ratio_adapters']:.2f}x | {f['ratio_end_to_end']:.2f}x | "
                   f"{f['tokenizer_share']:.1%} |")
    return out


def bench_train(model, device, points, batch, repeats):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05)
    pts = cloud(batch, points, device)
    y = torch.arange(batch, device=device) % NUM_CLASSES

    def step():
        loss = F.cross_entropy(model(pts), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    try:
        with PeakMemory(device) as mem:
            t = interleaved({"step": step}, device, repeats)["step"]
    finally:
        model.eval()
        del opt
    return dict(points=points, batch=batch, trainable=sum(p.numel() for p in params),
                step_ms=t * 1e3, clouds_per_s=batch / t, peak_mb=mem.mb, memory_method=mem.method)


# --- report -----------------------------------------------------------------------------------------------------
def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(devices, a):
    names = []
    for d in devices:
        names.append(f"cuda ({torch.cuda.get_device_name(d)})" if d.type == "cuda" else f"cpu ({cpu_name()}, "
                     f"{os.cpu_count()} cores)")
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mode = "quick" if a.quick else "full"
    return (f"device: {'; '.join(names)} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
            f"{date} | {mode} mode, median of {a.repeats} repeats")


def with_scheme(name):
    """A full spec as given, or a bare packaged name ("minilm-l6") as its packaged: spec."""
    try:
        parse(name)
        return name
    except ValueError:
        return f"packaged:{name}"


def render(results, skipped, devices, a):
    out = ["# Any2Point speed", "", "Generated by `python benchmarks/speed.py" + (" --quick" if a.quick else "") +
           "`; every number is measured, none typed. Absolute times depend on the machine and its load; the "
           "ratios much less.", "", header(devices, a), ""]
    out += ["## Tokenizer (FPS + kNN + MLPs), batch 1", "",
            "| backbone | device | points | tokens | median ms |", "|---|---|---|---|---|"]
    for r in results:
        for t in r["tokenizer"]:
            out.append(f"| {short_name(r['spec'])} | {r['device']} | {t['points']:,} | {t['tokens']} | {t['ms']:.2f} |")
    out += ["", "## Adapted forward vs bare frozen backbone, batch 1", "",
            "Same run, interleaved repeats, all on the same tokens: bare = the frozen blocks alone (adapters "
            "off); adapted = Any2Point from those tokens to logits (projection, PE, adapters, guided adapter, head); "
            "adapters off = the same with both adapters off (projection, PE and head, which any frozen-backbone "
            "method with this PE pays too); end to end = from the points (adds the tokenizer); tokenizer share = "
            "tokenizer / end to end.", ""]
    out += forward_table([(f"{short_name(r['spec'])} ({r['device']})", r["forward"]) for r in results])
    methods = sorted({t["memory_method"] for r in results for t in r["train"]})
    out += ["", f"## Training step (forward + backward + AdamW on the trainable parameters), batch {a.train_batch}",
            "", f"Peak memory: {'; '.join(methods)}.", "",
            "| backbone | device | points | trainable params | step ms | clouds/s | peak memory MB |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        for t in r["train"]:
            out.append(f"| {short_name(r['spec'])} | {r['device']} | {t['points']:,} | {t['trainable']:,} | "
                       f"{t['step_ms']:.1f} | {t['clouds_per_s']:.2f} | {t['peak_mb']:.0f} |")
    if skipped:
        out += ["", "Skipped: " + "; ".join(f"{short_name(s)} ({why})" for s, why in skipped) + "."]
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", help="comma-separated specs or packaged names (default: the three packaged "
                   f"backbones; --quick: {short_name(QUICK_BACKBONE)})")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement, median reported (default 10; "
                   "--quick: 2)")
    p.add_argument("--quick", action="store_true", help="reduced run for CI: one backbone, 1k/2k points, "
                   "tiny repeat counts")
    p.add_argument("--device", default="auto", help="auto (CPU, plus CUDA when available) | cpu | cuda | cuda:N")
    p.add_argument("--points", help="comma-separated tokenizer sizes (default 1024,2048,8192,32768; --quick: "
                   "1024,2048)")
    p.add_argument("--train-batch", type=int, default=16, help="clouds per training step (default 16)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", help="markdown file to write (default benchmarks/SPEED.md, the file the README links; "
                   "--quick writes none unless given, so a CI run never replaces the full tables; '' = none)")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = "" if a.quick else str(ROOT / "benchmarks/SPEED.md")
    if a.repeats is None:
        a.repeats = 2 if a.quick else 10
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    specs = a.backbones.split(",") if a.backbones else ([QUICK_BACKBONE] if a.quick else list(PACKAGED))
    specs = [with_scheme(s.strip()) for s in specs if s.strip()]
    a.specs = specs[:1] if a.quick else specs
    a.sizes = [int(s) for s in a.points.split(",")] if a.points else ([1024, 2048] if a.quick else
                                                                    [1024, 2048, 8192, 32768])
    a.train_points = [1024, 2048]
    return a


def devices_for(name):
    if name == "auto":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    d = torch.device(name)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")
    return [d]


def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = devices_for(a.device)
    results, skipped = [], []
    for spec in a.specs:
        for device in devices:
            try:
                model = build(spec, device)
            except Exception as err:  # a backbone that cannot be had here (package missing) is reported, not fatal
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                skipped.append((spec, first))
                print(f"skipping {spec}: {first}", file=sys.stderr)
                break
            print(f"{short_name(spec)} on {device}: tokenizer ...", file=sys.stderr)
            tok = bench_tokenizer(model, device, a.sizes, a.repeats)
            print(f"{short_name(spec)} on {device}: forward ...", file=sys.stderr)
            fwd = bench_forward(model, device, 2048, a.repeats)
            print(f"{short_name(spec)} on {device}: train steps ...", file=sys.stderr)
            train = [bench_train(model, device, n, a.train_batch, a.repeats) for n in a.train_points]
            results.append(dict(spec=spec, device=device.type, tokenizer=tok, forward=fwd, train=train))
            del model
            _trim()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not results:
        raise SystemExit("error: no backbone could be built: " + "; ".join(f"{s}: {w}" for s, w in skipped))
    md = render(results, skipped, devices, a)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(md)
        print(f"written to {a.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
