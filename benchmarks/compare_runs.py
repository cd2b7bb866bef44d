"""Does Any2Point beat its baselines on the test split by more than the noise? A paired comparison per test model.

    python benchmarks/compare_runs.py [--runs-dir runs/sh3d] [--boot 10000] [--readme README.md]

For every finished run of the SH3D suite (all seeds) it reloads the run's entry (`<run>/entry`, the best-on-val
checkpoint), predicts the test split once (no voting) and checks that the accuracy equals the run's result.json.
Then, per backbone, Any2Point minus the linear probe and minus from scratch: each test model's correctness is
averaged over the seeds a method has, the difference of the two methods is averaged over the test models, and a
95% interval comes from a paired bootstrap over test models (both methods see the same resampled models). An
interval that contains 0 means this benchmark cannot tell the two apart. With --readme the table replaces the block
between <!-- comparison:start --> and <!-- comparison:end -->.

`--checkpoint last` compares the models of each run's last epoch instead (`<run>/last.pt`, the end of the cosine
schedule; block <!-- comparison-last:start/end -->): with 56 val models, picking the best of 50 epochs on val is
itself noisy, and this shows how much of a difference is that selection.
"""
import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_table import update_block  # noqa: E402

METHODS = {"any2point": "Any2Point", "linear_probe": "linear probe", "from_scratch": "from scratch",
           "random_backbone": "random frozen backbone (control)"}


@torch.no_grad()
def test_correct(run_dir, batch=16, checkpoint="best"):
    """-> (per-test-model correctness as 0/1 floats, accuracy recorded in result.json). checkpoint: "best" (the
    entry, best on val) or "last" (the last epoch's trainable state, from the resume checkpoint)."""
    from train.run import RunConfig, build_datasets
    from zoo.registry import load_artifact
    cfg = json.loads((run_dir / "run_config.json").read_text())
    cfg = RunConfig(**{k: v for k, v in cfg.items() if k in {f.name for f in dataclasses.fields(RunConfig)}})
    test = build_datasets(cfg)[0]["test"]
    model = load_artifact(run_dir / "entry")
    if checkpoint == "last":
        model.load_trainable_state_dict(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"])
    correct = []
    for i in range(0, len(test), batch):
        pts, y = zip(*(test[j] for j in range(i, min(i + batch, len(test)))))
        pred = model(torch.stack(pts).float()).argmax(-1)
        correct.append((pred == torch.tensor(y)).float())
    return torch.cat(correct).numpy(), json.loads((run_dir / "result.json").read_text())["test_acc"]


def parse_run(name):
    """Suite run name -> (backbone, method), or None for ablations and other runs."""
    m = re.fullmatch(r"(?:any2point-\w+?-(\w+)-sh3d|(?:baseline|control)-(linear-probe|from-scratch|random-backbone)"
                     r"-(\w+?))(?:-seed\d+)?", name)
    if not m:
        return None
    return (m.group(1), "any2point") if m.group(1) else (m.group(3), m.group(2).replace("-", "_"))


def collect(runs_dir, checkpoint="best"):
    """-> {(backbone short name, method): [per-seed correctness arrays]} for the suite's main runs."""
    out = {}
    for result in sorted(Path(runs_dir).glob("*/result.json")):
        run = result.parent
        parsed = parse_run(run.name)
        if not parsed or not (run / "entry" / "config.json").exists():
            continue  # ablations and unfinished runs
        backbone, method = parsed
        correct, recorded = test_correct(run, checkpoint=checkpoint)
        if checkpoint == "best" and abs(correct.mean() - recorded) > 1e-6:
            raise SystemExit(f"{run.name}: re-evaluated test accuracy {correct.mean():.4f} != result.json "
                             f"{recorded:.4f}; the entry is not the checkpoint the run reported")
        out.setdefault((backbone, method), []).append(correct)
    return out


def compare(a, b, boot=10000, seed=0):
    """a, b: lists of per-seed correctness arrays over the same test models -> (acc a, acc b, diff, lo, hi)."""
    ca, cb = np.mean(a, axis=0), np.mean(b, axis=0)  # per test model, averaged over seeds
    d = ca - cb
    idx = np.random.default_rng(seed).integers(0, len(d), size=(boot, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return ca.mean(), cb.mean(), d.mean(), lo, hi


def table(results, boot=10000):
    lines = ["| backbone | Any2Point vs | seeds (A2P / baseline) | Any2Point test acc | baseline test acc | "
             "difference | 95% interval (paired bootstrap over test models) |", "|---|---|---|---|---|---|---|"]
    for backbone in sorted({k[0] for k in results}):
        a2p = results.get((backbone, "any2point"))
        for method in ("linear_probe", "from_scratch", "random_backbone"):
            base = results.get((backbone, method))
            if not a2p or not base:
                continue
            acc_a, acc_b, d, lo, hi = compare(a2p, base, boot)
            lines.append(f"| {backbone} | {METHODS[method]} | {len(a2p)} / {len(base)} | {acc_a:.1%} | {acc_b:.1%} | "
                         f"{d * 100:+.1f} | [{lo * 100:+.1f}, {hi * 100:+.1f}] |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-dir", default=str(ROOT / "runs/sh3d"))
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="best: each run's entry (best epoch on val, the protocol); last: its last epoch")
    p.add_argument("--readme", help="update this file's comparison block")
    a = p.parse_args(argv)
    results = collect(a.runs_dir, a.checkpoint)
    if not results:
        raise SystemExit(f"no finished suite runs with entries under {a.runs_dir}")
    md = table(results, a.boot)
    print(md)
    if a.readme:
        tag = "comparison" if a.checkpoint == "best" else "comparison-last"
        update_block(a.readme, md, f"<!-- {tag}:start -->", f"<!-- {tag}:end -->")
        print(f"updated {a.readme}")


if __name__ == "__main__":
    main()
