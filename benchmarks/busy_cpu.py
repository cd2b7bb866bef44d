"""predict() on a busy machine: each default entry idle vs with one core kept busy, before and after the thread
policy of zoo.serving (one intra-op thread for small forwards).

    python -m benchmarks busy-cpu [--rounds 5] [--calls 5] [--entries NAME ...] [--batch 16]

"busy" = another process spinning on one core (`python -c "while True: pass"`), started and stopped by this script.
"before" = torch's own setting (one thread per core: the library did nothing), "after" = the policy (the default).
The four conditions are interleaved in rounds (idle and busy alternate, before and after alternate inside each), so
drifting load from other jobs on the machine hits them alike; the load average is recorded with every round.
Median (and quartiles) over rounds x calls >= 20 calls per entry and condition, on a fixed 2,048-point cloud
(predict subsamples it to the entry's 1,024). --batch also times predict_batch of that many clouds, where the
policy leaves torch's setting alone, for the record of what the threshold gives away.
Writes benchmarks/results/busy_cpu.json and prints a markdown table.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import torch

import zoo.serving
from zoo.registry import DEFAULTS, load_model

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks" / "results" / "busy_cpu.json"
POLICIES = {"before": 0, "after": None}  # zoo.serving.INFERENCE_THREADS: 0 = leave torch alone, None = the policy


class Spinner:
    """Another process keeping one core busy, for the duration of a `with` block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # running, and the scheduler has noticed it
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def timed(fn, calls):
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(times):
    q = statistics.quantiles(times, n=4) if len(times) > 1 else times * 3
    return dict(median_ms=round(1e3 * statistics.median(times), 1), p25_ms=round(1e3 * q[0], 1),
                p75_ms=round(1e3 * q[2], 1), calls=len(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=5, help="calls per entry, condition and round")
    p.add_argument("--entries", nargs="*")
    p.add_argument("--batch", type=int, default=0, help="also time predict_batch of this many clouds")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.pop("ANY2POINT_TORCH_THREADS", None)  # the policy's defaults are what is measured
    names = a.entries or list(DEFAULTS.values())
    models = {n: load_model(n) for n in names}
    cloud = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
    torch_threads = torch.get_num_threads()
    jobs = {(n, "predict"): (lambda m=m: m.predict(cloud)) for n, m in models.items()}
    if a.batch:
        clouds = [cloud * s for s in np.linspace(0.5, 2, a.batch, dtype=np.float32)]
        jobs.update({(n, f"predict_batch({a.batch})"): (lambda m=m: m.predict_batch(clouds))
                     for n, m in models.items()})
    for fn in jobs.values():  # warm: first calls allocate and pick kernels
        fn()
    times = {(job, load, pol): [] for job in jobs for load in ("idle", "busy") for pol in POLICIES}
    loads = []
    for r in range(a.rounds):
        for load in (("idle", "busy") if r % 2 == 0 else ("busy", "idle")):
            with Spinner() if load == "busy" else _nothing():
                loads.append(dict(round=r, load=load, loadavg_1m=round(os.getloadavg()[0], 2)))
                for pol in (POLICIES if r % 2 == 0 else reversed(list(POLICIES))):
                    zoo.serving.INFERENCE_THREADS = POLICIES[pol]
                    for job, fn in jobs.items():
                        times[job, load, pol] += timed(fn, a.calls)
        print(f"round {r + 1}/{a.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    zoo.serving.INFERENCE_THREADS = None
    results = [dict(entry=n, call=c, load=load, policy=pol, **summary(t)) for ((n, c), load, pol), t in times.items()]
    record = dict(benchmark="busy_cpu", date=time.strftime("%Y-%m-%d %H:%M"), host=platform.node(),
                  cpus=os.cpu_count(), torch_threads=torch_threads, torch=torch.__version__,
                  small_forward=zoo.serving.SMALL_FORWARD, rounds=a.rounds, calls_per_round=a.calls,
                  loadavg_per_block=loads, results=results,
                  note="other engineers' jobs share this machine: 'idle' means without our spinner, not idle")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def table(record):
    by = {(r["entry"], r["call"], r["load"], r["policy"]): r for r in record["results"]}
    avg = {load: statistics.mean(b["loadavg_1m"] for b in record["loadavg_per_block"] if b["load"] == load)
           for load in ("idle", "busy")}
    lines = [f"{record['cpus']} cores, torch {record['torch_threads']} threads by default; median ms (quartiles) "
             f"of {by[next(iter(by))]['calls']} calls; 1-min load average at the start of each block: idle "
             f"{avg['idle']:.2f}, busy {avg['busy']:.2f} (other jobs on the machine included)", "",
             "| entry | call | idle, before | idle, after | busy, before | busy, after | busy: before / after |",
             "|---|---|---|---|---|---|---|"]
    cell = lambda r: f"{r['median_ms']:.0f} ({r['p25_ms']:.0f}-{r['p75_ms']:.0f})"  # noqa: E731
    for entry, call in dict.fromkeys((r["entry"], r["call"]) for r in record["results"]):
        c = {(load, pol): by[entry, call, load, pol] for load in ("idle", "busy") for pol in POLICIES}
        ratio = c["busy", "before"]["median_ms"] / c["busy", "after"]["median_ms"]
        lines.append(f"| `{entry}` | {call} | {cell(c['idle', 'before'])} | {cell(c['idle', 'after'])} | "
                     f"{cell(c['busy', 'before'])} | {cell(c['busy', 'after'])} | {ratio:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
