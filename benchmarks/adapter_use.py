"""What a trained entry's adapters contribute at inference: its test accuracy with both adapters on, without the
bottleneck adapters, without the guided adapter, and with neither (the same tokenizer, frozen backbone and head),
each paired against all-on over the test models (bootstrap over groups, as `python -m benchmarks compare`).

    python -m benchmarks adapter-use [--entries NAME ...] [--out benchmarks/results/adapter_use.json]

A large drop means the trained model relies on the adapters; none means the tokenizer and head do the work and the
adapters are a detour (which is what a linear probe matching Any2Point suggests). Single pass, one thread per
process; needs the entry's benchmark built (data/<dataset>).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.compare_runs import compare
from train.evaluate import correct_on, test_setup

ROOT = Path(__file__).resolve().parents[1]

CONDITIONS = {"bottleneck adapters off": ("adapters",), "guided adapter off": ("guided",),
              "both off": ("adapters", "guided")}


def entry_run_config(name):
    """A shipped entry (zoo/checkpoints/<name>) -> (its folder, the run config dict that rebuilds its test data)."""
    entry = ROOT / "zoo" / "checkpoints" / name
    c = json.loads((entry / "config.json").read_text())
    t = c.get("training", {})
    return entry, dict(t, dataset=t.get("dataset", "sh3d"), data_root=f"data/{t.get('dataset', 'sh3d')}",
                       backbone=c["backbone"]["spec"], variant=c.get("variant", "any2point"), model=c["model"], name=name)


def measure(name, boot=10000):
    entry, cfg = entry_run_config(name)
    cfg, test, groups, model = test_setup(entry=entry, cfg=cfg)
    base = correct_on(model, test, cfg)
    row = {"test_n": len(test), "all on": float(base.mean())}
    for label, parts in CONDITIONS.items():
        with model.bare(*parts):
            c = correct_on(model, test, cfg)
        acc_off, _, d, lo, hi = compare([c], [base], boot, groups=groups)
        row[label] = {"acc": float(acc_off), "diff": float(d), "ci": [float(lo), float(hi)]}
    return row


def table(results):
    lines = ["| entry | test models | all on | " + " | ".join(CONDITIONS) + " |",
             "|---|---|---|" + "---|" * len(CONDITIONS)]
    for name, r in results.items():
        cells = [f"{r[c]['acc']:.1%} ({r[c]['diff'] * 100:+.1f} [{r[c]['ci'][0] * 100:+.1f}, "
                 f"{r[c]['ci'][1] * 100:+.1f}])" for c in CONDITIONS]
        lines.append(f"| `{name}` | {r['test_n']} | {r['all on']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", nargs="+", default=["any2point-vision-dinov2s-kicad33",
                                                    "any2point-language-minilm-kicad33",
                                                    "any2point-audio-whisper-kicad33"])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/adapter_use.json"))
    p.add_argument("--boot", type=int, default=10000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for name in a.entries:
        t0 = time.time()
        results[name] = measure(name, a.boot)
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr)
    md = table(results)
    print(md)
    Path(a.out).write_text(json.dumps({"benchmark": "adapter_use", "date": time.strftime("%Y-%m-%d %H:%M"),
                                       "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
