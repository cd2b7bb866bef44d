"""The low-data curve: accuracy against k training models per class, one line per method, interval bands.

    python -m benchmarks low-data ncm [--benchmark kicad33] [--entries NAME ...]   # training-free records
    python -m benchmarks low-data plot                                            # the PNG, from the records

Draws: `train.data.built.few_shot` (k models per class from distinct families, seeded), the same function and seeds
`train/run.py --shots k --seed s` uses, so every method of a (k, seed) pair sees the same training models. kicad33:
k in {5, 10, 20, 50}, 3 draws for k <= 20, tested on the whole default test split; SweetHome3D: k in {5, 10}, one
draw per cross-validation fold, each fold's test models.

`ncm` is the training-free method: each shipped entry's `embed()` (the pooled features its head sees), L2-normalised,
a class mean over the k drawn models, the nearest mean by cosine. An entry trained on the same benchmark saw every
training label of it (ablation "own-task-entry": an upper reference, not a low-data result); an entry trained on the
other benchmark never saw this task ("other-task-entry"). Each draw writes one run record
(benchmarks/results/low-data/), read like every other record; the plot and the table render from them.
"""
import argparse
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results" / "low-data"
SHOTS = {"kicad33": {5: 3, 10: 3, 20: 3, 50: 1}, "sh3d": {5: 1, 10: 1}}  # k -> draws (seeds); sh3d: per fold
DATA = {"kicad33": "data/kicad33", "sh3d": "data/sh3d"}
FOLDS = {"kicad33": [None], "sh3d": [0, 1, 2, 3, 4]}


def ncm_correct(train_x, train_y, test_x, test_y):
    """Nearest class mean by cosine: (n, D) features, labels -> per test model 1 if right, 0 if not."""
    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    tx = unit(train_x)
    classes = np.unique(train_y)
    means = unit(np.stack([tx[train_y == c].mean(0) for c in classes]))
    pred = classes[(unit(test_x) @ means.T).argmax(1)]
    return (pred == test_y).astype(int)


def ncm_records(benchmark, entries, data_root=None, out=RECORDS):
    """Embed each split once per entry, then one NCM record per (entry, k, draw, fold)."""
    from tqdm.auto import tqdm

    from train.data import DATASETS
    from train.data.built import few_shot
    from train.record import RunRecord
    from zoo import load_model
    from zoo.registry import adapter_sha256, get_entry
    from zoo.specs import short_name
    root = data_root or ROOT / DATA[benchmark]
    written = []
    for name in entries:
        entry = get_entry(name)
        own = entry.dataset == benchmark
        if own and FOLDS[benchmark] != [None]:
            # the entry trained on the default split, whose training models are other folds' test models
            print(f"skipped {name}: trained on {benchmark}'s default split, which holds the folds' test models")
            continue
        model = load_model(name)
        embedded = {}  # cloud bytes -> features: over the folds a model is in several splits, embedded once. Keyed by
        # content, not by manifest name: SweetHome3D names repeat across catalogues (a name key picked wrong models)

        def features(ds):
            keys = [hashlib.blake2b(ds.points[i].tobytes(), digest_size=16).digest() for i in range(len(ds))]
            for i in tqdm([i for i, k in enumerate(keys) if k not in embedded], desc=name, leave=False):
                embedded[keys[i]] = model.embed(ds.points[i])
            return np.stack([embedded[k] for k in keys])

        for fold in FOLDS[benchmark]:
            train = DATASETS[benchmark](root, "train", fold=fold)
            val = DATASETS[benchmark](root, "val", fold=fold)
            test = DATASETS[benchmark](root, "test", fold=fold)
            val_x, test_x = features(val), features(test)
            for k, draws in SHOTS[benchmark].items():
                for seed in range(draws):
                    few = few_shot(train, k, seed)  # train.run --shots k --seed s [--fold f] draws the same
                    few_x, few_y = features(few), np.asarray(few.targets)
                    correct = ncm_correct(few_x, few_y, test_x, np.asarray(test.targets))
                    # val as the trained runs have it, so val_choice can weigh NCM against them
                    val_acc = float(ncm_correct(few_x, few_y, val_x, np.asarray(val.targets)).mean())
                    rec = RunRecord(name=f"ncm-{name}-k{k}-seed{seed}" + (f"-fold{fold}" if fold is not None else ""),
                                    benchmark=benchmark, backbone=short_name(entry.backbone), method="ncm",
                                    ablation="own-task-entry" if own else "other-task-entry",
                                    seed=seed, fold=fold, shots=k,
                                    run_config=dict(entry=name, data_root=str(data_root or DATA[benchmark])))
                    # the record's adapter is the entry's whose embed() it used: retrained entries leave it stale
                    rec.finish(dict(test_acc=float(correct.mean()), test_n=len(correct), val_acc=val_acc),
                               dict(modality=None, variant="ncm", model=None, adapter=dict(sha256=adapter_sha256(name))),
                               correct, test.groups)
                    written.append(rec.save(Path(out) / f"{rec.name}.json"))
                    print(f"{rec.name}: {correct.mean():.1%}", flush=True)
    return written


class Cell(NamedTuple):
    """One (method, k) of the curve. diff: (difference, lo, hi, test models) against PointNeXt-S, paired on the
    test models both have, or None; starts: how many versions of a start entry its runs began from (0: none)."""
    acc: float
    lo: float
    hi: float
    runs: int
    diff: tuple | None
    starts: int


def label(backbone, method, ablation):
    if method == "pointnext":
        return "PointNeXt-S (from scratch)" + (f", {ablation}" if ablation else "")
    if method == "ncm":
        seen = "own task: saw all labels" if ablation == "own-task-entry" else "other task"
        return f"NCM on the {backbone} entry's embed() ({seen})"
    names = {"any2point": "Any2Point", "linear_probe": "linear probe", "from_scratch": "from scratch"}
    return f"{names.get(method, method)} ({backbone})" + (f", {ablation}" if ablation else "")


def curves(records, benchmark, boot=2000, ks=None, reference=None):
    """Records -> {row label: {k: Cell}}
    over the runs of `benchmark` with k shots: draws averaged per test model, folds concatenated; intervals are
    bootstraps over the test groups (families on kicad33), the difference paired with PointNeXt-S's runs of the same
    k on the test models both have, on the schedule val chooses (compare_runs.pointnext_schedule; reference: those
    of its diagnostic ablation `reference` instead, e.g. points-512). starts: how many versions of a start entry
    (`--init-from`) the runs began from, 0 without one: an entry retrained under its name between draws leaves a
    cell mixing them, and the table says so."""
    from benchmarks.compare_runs import collect, compare, method_key, pointnext_schedule, pool
    records = list({r.key: r for r in records if r.done}.values())  # one run per key, whichever campaign holds it
    rows = {}
    if ks is None:  # every k the records have; [None]: the full-data comparison (whole training split)
        ks = sorted({r.shots for r in records if r.benchmark == benchmark and r.shots})
    for k in ks:
        res = collect([r for r in records if r.benchmark == benchmark], shots=k)
        res = {(b, m): v for (b, m), v in res.items()}
        # without a diagnostic reference, PointNeXt-S on the schedule val chooses at this k
        ablation = reference or pointnext_schedule([r for r in records if r.benchmark == benchmark and r.shots == k])
        ref_key = ("pointnext-sm", f"ablation:{ablation}" if ablation else "pointnext")
        ref = res.get(ref_key)
        for (backbone, mkey), runs in sorted(res.items()):
            cell = [r for r in records if r.benchmark == benchmark and r.shots == k and r.backbone == backbone
                    and method_key(r) == mkey]
            starts = len({(r.entry or {}).get("init_from_sha256") for r in cell} - {None})
            pa, _, groups = pool(runs, runs)
            acc, _, _, lo, hi = _interval(pa[0], groups, boot)
            diff = None
            if ref is not None and (backbone, mkey) != ref_key:
                a, b, g = pool(runs, ref)
                if g:
                    diff = (*compare(a, b, boot, groups=g)[2:], len(g))
            name = label(backbone, cell[0].method, cell[0].ablation)
            rows.setdefault(name, {})[k] = Cell(acc, lo, hi, len(runs), diff, starts)
    return rows


def _interval(correct, groups, boot, seed=0):
    """Accuracy and its 95% bootstrap interval over whole groups -> (acc, acc, 0, lo, hi)."""
    _, gid = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(gid, weights=correct), np.bincount(gid).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(boot, len(sums)))
    lo, hi = np.percentile(sums[idx].sum(1) / counts[idx].sum(1), [2.5, 97.5])
    return correct.mean(), correct.mean(), 0.0, lo, hi


def table(rows, versus="PointNeXt-S"):
    """The curve as markdown: one row per method, one column per k (accuracy, and vs PointNeXt-S the paired
    difference with its interval and whether it excludes 0)."""
    ks = sorted({k for r in rows.values() for k in r}, key=lambda k: k or 1 << 30)
    lines = ["| method | " + " | ".join(f"k = {k}" if k else "full training split" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for name, cells in rows.items():
        out = []
        for k in ks:
            if k not in cells:
                out.append("–")
                continue
            acc, lo, hi, n, diff, starts = cells[k]
            mixed = f" from {starts} versions of the start entry" if starts > 1 else ""
            text = f"{acc:.1%} [{lo:.1%}, {hi:.1%}] ({n} run{'s' * (n > 1)}{mixed})"
            if diff is not None:
                d, dlo, dhi, n_models = diff
                verdict = "ahead" if dlo > 0 else "behind" if dhi < 0 else "not resolved"
                text += (f"; vs {versus} {d * 100:+.1f} [{dlo * 100:+.1f}, {dhi * 100:+.1f}] {verdict} "
                         f"(paired on the {n_models} test models both have)")
            out.append(text)
        lines.append(f"| {name} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def val_choice(records, benchmark, k):
    """How the low-data recipe is chosen: each method's val accuracy per draw at k shots (kicad33: seed,
    SweetHome3D: fold), and its mean over the draws the complete rows have (every draw of the table; without a
    complete row, the draws every row has). A row still missing some of them shows the mean over its own draws and
    waits for the rest before it can be chosen: one more backbone's first draw must not shrink the choice of the
    others to that draw. Val only: test is not read here. NCM counts as a method when its entry is of the other
    task; an entry of this task chose its epoch on this val split (and its older records have no val). The column
    "chosen" marks the candidate with the best mean, among the ways to use the zoo (Any2Point runs and NCM); the
    baselines are what it is compared with, not candidates."""
    runs, candidates = {}, set()
    for r in records:
        if r.method == "ncm" and (r.ablation != "other-task-entry" or "val_acc" not in (r.result or {})):
            continue
        if r.done and r.benchmark == benchmark and r.shots == k:
            draw = f"fold {r.fold}" if r.fold is not None else f"seed {r.seed}"
            name = label(r.backbone, r.method, r.ablation)
            runs.setdefault(name, {})[draw] = r.result["val_acc"]
            if r.method in ("any2point", "ncm"):
                candidates.add(name)
    if not runs:
        return "No finished runs yet."
    draws = sorted({d for v in runs.values() for d in v})
    complete = any(len(v) == len(draws) for v in runs.values())
    common = draws if complete else [d for d in draws if all(d in v for v in runs.values())]
    means = {name: np.mean([vals[d] for d in common]) for name, vals in runs.items()
             if common and all(d in vals for d in common)}
    chosen = max(sorted(candidates & set(means)), key=means.get, default=None)
    lines = ["| method | " + " | ".join(f"val, {d}" for d in draws) + f" | mean over {', '.join(common) or '—'} "
             "| chosen |", "|---|" + "---|" * (len(draws) + 2)]
    for name, vals in sorted(runs.items()):
        own = [d for d in draws if d in vals]
        mean = f"{means[name]:.1%}" if name in means else \
            f"{np.mean([vals[d] for d in own]):.1%} (over {', '.join(own)} only)"
        lines.append(f"| {name} | " + " | ".join(f"{vals[d]:.1%}" if d in vals else "–" for d in draws) +
                     f" | {mean} | {'**yes**' if name == chosen else ''} |")
    return "\n".join(lines)


def plot(rows, path, title):
    """Accuracy vs k, one line per method with its interval band -> PNG (deterministic bytes: no metadata)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 5), dpi=100)
    if not rows:  # the doc links the picture before its runs exist: say so in it
        ax.text(0.5, 0.5, "no finished low-data runs yet", ha="center", va="center")
    # more lines than the default cycle's 10 colours: those, then tab20's light ones
    colours = [*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2]]
    for i, (name, cells) in enumerate(rows.items()):
        ks = sorted(cells)
        acc = [cells[k].acc * 100 for k in ks]
        c = colours[i % len(colours)]
        ax.plot(ks, acc, marker="o", label=name, color=c, linestyle="--" if name.startswith("NCM") else "-")
        ax.fill_between(ks, [cells[k].lo * 100 for k in ks], [cells[k].hi * 100 for k in ks], alpha=0.12, color=c)
    ks = sorted({k for c in rows.values() for k in c})
    if ks:
        ax.set_xscale("log")
        ax.set_xticks(ks, labels=[str(k) for k in ks])
        ax.minorticks_off()  # the log axis's minor labels (6 x 10^0 ...) would crowd the k that were run
    ax.set_xlabel("training models per class (k)")
    ax.set_ylabel("test accuracy, % (95% bootstrap band)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the bands, not over them
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks low-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("ncm", help="nearest-class-mean records on the shipped entries' embed()")
    n.add_argument("--benchmark", choices=sorted(SHOTS), default="kicad33")
    n.add_argument("--entries", nargs="+", help="default: the shipped entries of both benchmarks")
    n.add_argument("--data-root", help=f"default {DATA}")
    n.add_argument("--out", default=str(RECORDS), help="folder for the records (default: %(default)s)")
    pl = sub.add_parser("plot", help="the curve's PNG and table per benchmark, from the records")
    pl.add_argument("--out", default=str(ROOT / "docs"), help="folder for low_data_<benchmark>.png")
    a = p.parse_args(argv)
    if a.cmd == "plot":
        from train.record import campaign_folders, load_records
        records = [r for d in campaign_folders(ROOT / "benchmarks" / "results") for r in load_records(d)]
        for benchmark in SHOTS:
            rows = curves(records, benchmark)
            print(f"{benchmark}:\n{table(rows) if rows else 'no finished runs yet'}")
            print(plot(rows, Path(a.out) / f"low_data_{benchmark}.png",
                       f"{benchmark}: accuracy vs training models per class"))
    if a.cmd == "ncm":
        from zoo import list_models
        entries = a.entries or [m["name"] for m in list_models() if m["trained"] and m["dataset"] in SHOTS]
        ncm_records(a.benchmark, entries, a.data_root, a.out)


if __name__ == "__main__":
    main()
