"""What each faithful-method ablation costs on this CPU: forward ms per cloud and training clouds/s, per recipe.

    python -m benchmarks method-cost [--benchmark kicad33] [--repeats 20] [--threads 1] [--only KEY ...]
    python -m benchmarks method-cost --versus-pointnext [--bf16] [--repeats 5]    # the tokenizers vs PointNeXt-S

For every backbone's recipe (train/configs/<benchmark>_<backbone>.toml; with --only, those the ablations use) and
every ablation of suite.METHOD_ABLATIONS on it, the model is built exactly as train/run.py builds it (random
trainable weights: the cost does not depend on them) and timed with speed.py's interleaved medians: one 2,048-point cloud end to end, the bare frozen backbone on
the same tokens, and a training step at the recipe's points and batch. Writes benchmarks/results/costs_<benchmark>.json
(keys: <ablation or "recipe">-<backbone short name>), which the ablation tables read. Run it on an idle machine (no training beside it).
"""
import argparse
import json
from pathlib import Path

import torch

from benchmarks.speed import bench_forward, bench_train, interleaved
from benchmarks.suite import BACKBONES, METHOD_ABLATIONS, ablation_sets, recipe

ROOT = Path(__file__).resolve().parents[1]


def cost(benchmark, short, sets=(), repeats=20, train_repeats=3, points=2048):
    """-> {ms_per_cloud, bare_ms, end_to_end_over_bare, train_clouds_per_s, trainable} for a recipe + --set flags."""
    from train.run import build_model, parse_args, resolve
    from zoo.specs import short_name
    args = ["--config", str(recipe(benchmark, short))] + [x for kv in sets for x in ("--set", kv)]
    cfg = resolve(parse_args(args))
    torch.manual_seed(0)
    model = build_model(cfg, [str(i) for i in range(33)])[0].eval()
    f = bench_forward(model, torch.device("cpu"), points, repeats)
    t = bench_train(model, torch.device("cpu"), cfg.points, cfg.batch_size, train_repeats)
    return dict(ms_per_cloud=round(f["end_to_end_ms"], 2), bare_ms=round(f["bare_ms"], 2),
                end_to_end_over_bare=round(f["ratio_end_to_end"], 3), tokenizer_ms=round(f["tokenizer_ms"], 2),
                train_clouds_per_s=round(t["clouds_per_s"], 2), trainable=t["trainable"], points=points,
                train_points=cfg.points, batch=cfg.batch_size, backbone=short_name(cfg.backbone))


# The tokenizers Any2Point can use against the network a user would train instead (issue #26): (row, recipe
# backbone, ablation key of suite.METHOD_ABLATIONS or None, extra train/run.py flags)
VERSUS_POINTNEXT = [("Any2Point, one-stage tokenizer (the recipe)", "whisper", None, []),
                    ("Any2Point, CPU-sized Point-PN", "whisper", "pointpn-cpu", []),
                    ("Any2Point, official-size Point-PN", "whisper", "pointpn-official", []),
                    ("PointNeXt-S (all trained)", "whisper", None, ["--variant", "pointnext", "--points", "1024",
                                                                    "--batch-size", "32"])]


def training_costs(benchmark="kicad33", repeats=5, bf16=False):
    """Training clouds/s of each VERSUS_POINTNEXT row, measured side by side: every repeat runs one optimiser step
    of each model in turn (speed.interleaved), each at its recipe's points and batch, so load hits all alike."""
    import torch.nn.functional as F

    from train.run import build_model, parse_args, resolve
    steps, rows = {}, {}
    for name, short, key, flags in VERSUS_POINTNEXT:
        sets = ablation_sets(key, short) if key else []
        cfg = resolve(parse_args(["--config", str(recipe(benchmark, short)), *flags,
                                  *[x for kv in sets for x in ("--set", kv)]]))
        torch.manual_seed(0)
        model = build_model(cfg, [str(i) for i in range(33)])[0].train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        pts = torch.rand(cfg.batch_size, cfg.points, 3) * 2 - 1
        y = torch.arange(cfg.batch_size) % 33

        def step(model=model, opt=opt, pts=pts, y=y):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(pts).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steps[name] = step
        rows[name] = dict(points=cfg.points, batch=cfg.batch_size, trainable=sum(p.numel() for p in params),
                          ablation=key, variant=cfg.variant)
    times = interleaved(steps, torch.device("cpu"), repeats)
    for name, t in times.items():
        rows[name].update(step_s=round(t, 4), clouds_per_s=round(rows[name]["batch"] / t, 2))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="kicad33")
    p.add_argument("--repeats", type=int, default=20, help="forward repeats (interleaved; the median is kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: what a training job of the suite gets)")
    p.add_argument("--only", nargs="*", help="these ablation keys (and their recipes) only")
    p.add_argument("--out", help="default benchmarks/results/costs_<benchmark>.json (merged into)")
    p.add_argument("--versus-pointnext", action="store_true", help="instead: training clouds/s of Any2Point with each "
                   "tokenizer and of PointNeXt-S, side by side (benchmarks/results/costs_pointnext.json)")
    p.add_argument("--bf16", action="store_true", help="with --versus-pointnext: under CPU bf16 autocast too")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.versus_pointnext:
        import datetime
        import os
        out = Path(a.out or ROOT / "benchmarks" / "results" / "costs_pointnext.json")
        rec = dict(benchmark=a.benchmark, threads=a.threads, repeats=a.repeats, cpus=os.cpu_count(),
                   loadavg_1m=round(os.getloadavg()[0], 2), date=datetime.date.today().isoformat(),
                   fp32=training_costs(a.benchmark, a.repeats))
        if a.bf16:
            rec["bf16"] = training_costs(a.benchmark, a.repeats, bf16=True)
        out.write_text(json.dumps(rec, indent=1) + "\n")
        for prec in ("fp32", "bf16"):
            for name, r in rec.get(prec, {}).items():
                print(f"{prec} {name}: {r['clouds_per_s']:.1f} clouds/s ({r['points']} points, batch {r['batch']})")
        print(f"wrote {out}")
        return
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"costs_{a.benchmark}.json")
    costs = json.loads(out.read_text()) if out.exists() else {}
    todo = {k: v for k, v in METHOD_ABLATIONS.items() if not a.only or k in a.only}
    plan = [("recipe", short, []) for short in (sorted(BACKBONES) if not a.only else
                                                           sorted({short for short, _, _ in todo.values()}))]
    plan += [(key, short, ablation_sets(key, short)) for key, (short, _, _) in todo.items()]
    for i, (key, short, sets) in enumerate(plan, 1):
        c = cost(a.benchmark, short, sets, a.repeats)
        name = f"{key}-{c.pop('backbone')}"  # the backbone as run records name it
        costs[name] = dict(c, threads=a.threads)
        print(f"[{i}/{len(plan)}] {name}: {c['ms_per_cloud']:.1f} ms/cloud (bare {c['bare_ms']:.1f}, "
              f"{c['end_to_end_over_bare']:.2f}x), train {c['train_clouds_per_s']:.1f} clouds/s, "
              f"{c['trainable']:,} trainable", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
