"""What each faithful-method ablation costs on this CPU: forward ms per cloud and training clouds/s, per recipe.

    python benchmarks/method_cost.py [--benchmark kicad33] [--repeats 20] [--threads 1] [--only KEY ...]

For every backbone's recipe (train/configs/<benchmark>_<backbone>.toml; with --only, those the ablations use) and
every ablation of suite.METHOD_ABLATIONS on it, the model is built exactly as train/run.py builds it (random
trainable weights: the cost does not depend on them) and timed with speed.py's interleaved medians: one 2,048-point cloud end to end, the bare frozen backbone on
the same tokens, and a training step at the recipe's points and batch. Writes benchmarks/results/<benchmark>/
costs.json, which compare_runs.py's ablation table reads. Run it on an idle machine (no training beside it).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from speed import bench_forward, bench_train  # noqa: E402
from suite import BACKBONES, METHOD_ABLATIONS, recipe  # noqa: E402


def cost(benchmark, short, sets=(), repeats=20, train_repeats=3, points=2048):
    """-> {ms_per_cloud, bare_ms, end_to_end_over_bare, train_clouds_per_s, trainable} for a recipe + --set flags."""
    from train.run import build_model, parse_args, resolve
    args = ["--config", str(recipe(benchmark, short))] + [x for kv in sets for x in ("--set", kv)]
    cfg = resolve(parse_args(args))
    torch.manual_seed(0)
    model = build_model(cfg, [str(i) for i in range(33)])[0].eval()
    f = bench_forward(model, torch.device("cpu"), points, repeats)
    t = bench_train(model, torch.device("cpu"), cfg.points, cfg.batch_size, train_repeats)
    return dict(ms_per_cloud=round(f["end_to_end_ms"], 2), bare_ms=round(f["bare_ms"], 2),
                end_to_end_over_bare=round(f["ratio_end_to_end"], 3), tokenizer_ms=round(f["tokenizer_ms"], 2),
                train_clouds_per_s=round(t["clouds_per_s"], 2), trainable=t["trainable"], points=points,
                train_points=cfg.points, batch=cfg.batch_size)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="kicad33")
    p.add_argument("--repeats", type=int, default=20, help="forward repeats (interleaved; the median is kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: what a training job of the suite gets)")
    p.add_argument("--only", nargs="*", help="these ablation keys (and their recipes) only")
    p.add_argument("--out", help="default benchmarks/results/<benchmark>/costs.json (merged into)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out or ROOT / "benchmarks" / "results" / a.benchmark / "costs.json")
    costs = json.loads(out.read_text()) if out.exists() else {}
    todo = {k: v for k, v in METHOD_ABLATIONS.items() if not a.only or k in a.only}
    plan = [(f"recipe-{short}", short, []) for short in (sorted(BACKBONES) if not a.only else
                                                           sorted({short for short, _, _ in todo.values()}))]
    plan += [(f"{key}-{short}", short, sets) for key, (short, _, sets) in todo.items()]
    for i, (name, short, sets) in enumerate(plan, 1):
        c = cost(a.benchmark, short, sets, a.repeats)
        costs[name] = dict(c, threads=a.threads)
        print(f"[{i}/{len(plan)}] {name}: {c['ms_per_cloud']:.1f} ms/cloud (bare {c['bare_ms']:.1f}, "
              f"{c['end_to_end_over_bare']:.2f}x), train {c['train_clouds_per_s']:.1f} clouds/s, "
              f"{c['trainable']:,} trainable", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
