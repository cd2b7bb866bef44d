"""Does Any2Point beat its baselines on the test split by more than the noise? A paired comparison per test model.

    python benchmarks/compare_runs.py [--benchmark sh3d|kicad33] [--runs-dir runs/<benchmark>] [--boot 10000]
                                      [--readme README.md] [--block NAME]

For every finished run of the suite (all seeds and folds) it reloads the run's entry (`<run>/entry`, the best-on-val
checkpoint), predicts the test split once (no voting) and checks that the accuracy equals the run's result.json.
Then, per backbone, Any2Point minus the linear probe, minus from scratch and minus the random-backbone control: each
test model's correctness is averaged over the seeds a method has, cross-validation folds are pooled (each fold tests
other models: over 5 folds every model once), the difference of the two methods is averaged over the test models,
and a 95% interval comes from a paired bootstrap over *groups* (both methods see the same resampled groups): the
families on kicad33 (parametric variants of one design are not independent), the models on SweetHome3D. An interval
that contains 0 means this benchmark cannot tell the two apart. Every table states its resolution (test models,
groups, the intervals' half-width). With --readme the table replaces the block between <!-- comparison:start -->
and <!-- comparison:end --> (or --block's).

Every re-evaluated run is kept as one small record, `benchmarks/results/<benchmark>/<run>.json` (its result.json, run
config, the entry's model settings and the per-test-model correctness and group, committed): the runs' folders are
gigabytes and do not outlive a machine, the records do, and this script and results_table.py read them where a run's
folder is gone (`--records`). A shipped entry (`zoo/checkpoints/<name>`) stands in for the first-seed Any2Point run
when that run's folder is absent: it is re-evaluated the same way and checked against the metrics it records.

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
from suite import BACKBONES, METHOD_ABLATIONS, ablation_text  # noqa: E402

METHODS = {"any2point": "Any2Point", "linear_probe": "linear probe", "from_scratch": "from scratch",
           "random_backbone": "random frozen backbone (control)"}


@torch.no_grad()
def test_correct(run_dir, batch=16, checkpoint="best", entry=None, cfg=None):
    """-> (per-test-model correctness as 0/1 floats, accuracy recorded in result.json, the model, each test model's
    bootstrap group: its family on kicad33, itself elsewhere). checkpoint:
    "best" (the entry, best on val) or "last" (the last epoch's trainable state, from the resume checkpoint).
    `entry` and `cfg` (a run config dict) replace `<run_dir>/entry` and its run_config.json (shipped entries)."""
    cfg, test, groups, model = test_setup(run_dir, entry, cfg)
    if checkpoint == "last":
        model.load_trainable_state_dict(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"])
    recorded = json.loads((entry / "config.json").read_text())["metrics"]["test_acc"] if entry else \
        json.loads((run_dir / "result.json").read_text())["test_acc"]
    return correct_on(model, test, cfg, batch), recorded, model, groups


def test_setup(run_dir=None, entry=None, cfg=None):
    """-> (RunConfig, test dataset, bootstrap groups, the entry's model) of a run, or of a shipped entry (`entry`
    and its run config dict `cfg`)."""
    from train.run import RunConfig, build_datasets, check_run_config
    from zoo.registry import load_artifact
    cfg = cfg or json.loads((run_dir / "run_config.json").read_text())
    known = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = RunConfig(**check_run_config({k: v for k, v in cfg.items() if k in known}))
    test = build_datasets(cfg)[0]["test"]
    groups = [str(g) for g in getattr(test, "groups", range(len(test)))]
    return cfg, test, groups, load_artifact(entry or run_dir / "entry")


@torch.no_grad()
def correct_on(model, test, cfg, batch=16):
    """Per-test-model correctness (0/1 floats) of `model` on the dataset `test`, one pass, as the run evaluated it."""
    from train.augment import resample
    correct = []
    for i in range(0, len(test), batch):
        pts, y = zip(*(test[j] for j in range(i, min(i + batch, len(test)))))
        pts = torch.stack(pts).float()
        pred = model(resample(pts, cfg.points, train=False) if cfg.resample else pts).argmax(-1)
        correct.append((pred == torch.tensor(y)).float())
    return torch.cat(correct).numpy()


def shipped_run(name, data_root="data/sh3d"):
    """A shipped first-seed entry as a run: (entry folder, run config dict, result dict), or None."""
    entry = ROOT / "zoo" / "checkpoints" / name
    if not (entry / "config.json").exists():
        return None
    c = json.loads((entry / "config.json").read_text())
    t = c.get("training", {})
    cfg = dict(t, dataset=t.get("dataset", "sh3d"), data_root=data_root, backbone=c["backbone"]["spec"],
               variant=c.get("variant", "any2point"), model=c["model"], name=name)
    result = dict(c["metrics"], epochs=t.get("epochs"), train_seconds=t.get("train_seconds"),
                  clouds_per_s=t.get("clouds_per_s"), peak_mb=t.get("peak_mb"), test_n=t.get("sizes", {}).get("test"))
    return entry, cfg, result


def write_record(records, name, cfg, result, entry_config, correct, groups=None):
    """One run's small, lasting record (see the module docstring)."""
    records = Path(records)
    records.mkdir(parents=True, exist_ok=True)
    rec = dict(run=name, run_config=cfg, result=result,
               entry={**{k: entry_config.get(k) for k in ("modality", "variant", "model")},
                      "adapter_sha256": (entry_config.get("adapter") or {}).get("sha256")},
               test_correct=[int(v) for v in correct])
    if groups is not None and list(groups) != [str(i) for i in range(len(correct))]:
        rec["test_groups"] = list(groups)
    (records / f"{name}.json").write_text(json.dumps(rec, indent=1) + "\n")


def parse_run(name):
    """Suite run name -> (backbone, method), or None for other runs; an ablation's method is "ablation:<key>"."""
    m = re.fullmatch(r"ablation-([\w-]+)-(dinov2s|minilm|whisper)(?:-seed\d+)?(?:-fold\d+)?", name)
    if m:
        return m.group(2), f"ablation:{m.group(1)}"
    m = re.fullmatch(r"(?:any2point-\w+?-(\w+)-(?:sh3d|kicad33)|(?:baseline|control)-"
                     r"(linear-probe|from-scratch|random-backbone)-(\w+?))(?:-seed\d+)?(?:-fold\d+)?", name)
    if not m:
        return None
    return (m.group(1), "any2point") if m.group(1) else (m.group(3), m.group(2).replace("-", "_"))


def run_fold(name):
    """The cross-validation round of a suite run (`...-fold<k>`), or None for the fixed split."""
    m = re.search(r"-fold(\d+)$", name)
    return int(m.group(1)) if m else None


@dataclasses.dataclass
class Tested:
    """One run's test outcome: which test models it got right (0/1), their bootstrap groups, its fold."""
    correct: np.ndarray
    groups: list
    fold: int | None = None


def collect(runs_dir, checkpoint="best", records=None, shipped=True, benchmark="sh3d"):
    """-> {(backbone short name, method): [Tested, one per seed and fold]} for the suite's main runs: the finished
    runs under runs_dir (re-evaluated; each leaves a record in `records`), the shipped entries for absent
    first-seed Any2Point runs, and (best checkpoint only) the kept records of runs whose folders are gone."""
    out, seen = {}, set()
    todo = [(r.parent.name, r.parent, None, None, None) for r in sorted(Path(runs_dir).glob("*/result.json"))
            if (r.parent / "entry" / "config.json").exists()]
    if shipped and checkpoint == "best":
        for short, modality in BACKBONES.items():
            name = f"any2point-{modality}-{short}-{benchmark}"
            # only where neither the run nor its record is left: a record is what the run was, and a shipped
            # entry may since have been retrained under another recipe
            kept = records and (Path(records) / f"{name}.json").exists()
            got = shipped_run(name, data_root=str(ROOT / "data" / benchmark)) \
                if not (Path(runs_dir) / name / "result.json").exists() and not kept else None
            if got:
                todo.append((name, None, *got))
    for name, run, entry, cfg, result in todo:
        parsed = parse_run(name)
        if not parsed:
            continue
        correct, recorded, model, groups = test_correct(run, checkpoint=checkpoint, entry=entry, cfg=cfg)
        if checkpoint == "best" and abs(correct.mean() - recorded) > 1e-6:
            raise SystemExit(f"{name}: re-evaluated test accuracy {correct.mean():.4f} != its record "
                             f"{recorded:.4f}; the entry is not the checkpoint the run reported")
        if records and checkpoint == "best":
            result = result or json.loads((run / "result.json").read_text())
            result.setdefault("trainable_parameters", model.num_trainable())
            cfg = cfg or json.loads((run / "run_config.json").read_text())
            write_record(records, name, cfg, result, json.loads(((entry or run / "entry") / "config.json")
                                                                .read_text()), correct, groups)
        out.setdefault(parsed, []).append(Tested(correct, groups, run_fold(name)))
        seen.add(name)
    for rec in sorted(Path(records).glob("*.json")) if records and checkpoint == "best" else []:
        r = json.loads(rec.read_text())
        if "run" not in r:  # costs.json and other non-run files beside the records
            continue
        parsed = parse_run(r["run"])
        if parsed and r["run"] not in seen:
            correct = np.asarray(r["test_correct"], dtype=float)
            groups = r.get("test_groups") or [str(i) for i in range(len(correct))]
            out.setdefault(parsed, []).append(Tested(correct, groups, run_fold(r["run"])))
    return out


def pool(a, b):
    """Two methods' runs -> (per-seed arrays of A, of B, groups) over the test models both have: seeds averaged
    within a fold, folds (disjoint test sets) concatenated; a fold only one method has is left out."""
    folds = sorted({t.fold for t in a} & {t.fold for t in b}, key=lambda f: -1 if f is None else f)
    ca, cb, groups = [], [], []
    for f in folds:
        ta, tb = [t for t in a if t.fold == f], [t for t in b if t.fold == f]
        ca.append(np.mean([t.correct for t in ta], axis=0))
        cb.append(np.mean([t.correct for t in tb], axis=0))
        groups += [f"{f}:{g}" for g in ta[0].groups]
    return [np.concatenate(ca)], [np.concatenate(cb)], groups


def compare(a, b, boot=10000, seed=0, groups=None):
    """a, b: lists of per-seed correctness arrays over the same test models -> (acc a, acc b, diff, lo, hi).

    The interval is a paired bootstrap over `groups` (one label per test model; default: each model its own):
    whole groups are resampled, and the difference is the mean over the resampled groups' models."""
    ca, cb = np.mean(a, axis=0), np.mean(b, axis=0)  # per test model, averaged over seeds
    d = ca - cb
    if groups is None:
        groups = np.arange(len(d))
    _, gid = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(gid, weights=d), np.bincount(gid).astype(float)  # per group
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(boot, len(sums)))
    lo, hi = np.percentile(sums[idx].sum(axis=1) / counts[idx].sum(axis=1), [2.5, 97.5])
    return ca.mean(), cb.mean(), d.mean(), lo, hi


def table(results, boot=10000):
    """The comparison table; its last line states the resolution (test models, groups, interval half-width)."""
    lines = ["| backbone | Any2Point vs | runs (A2P / baseline) | Any2Point test acc | baseline test acc | "
             "difference | 95% interval (paired bootstrap over groups) | excludes 0 |",
             "|---|---|---|---|---|---|---|---|"]
    sizes, widths = set(), []
    for backbone in sorted({k[0] for k in results}):
        a2p = results.get((backbone, "any2point"))
        for method in ("linear_probe", "from_scratch", "random_backbone"):
            base = results.get((backbone, method))
            if not a2p or not base:
                continue
            pa, pb, groups = pool(a2p, base)
            if not groups:
                continue
            acc_a, acc_b, d, lo, hi = compare(pa, pb, boot, groups=groups)
            sizes.add((len(groups), len(set(groups))))
            widths.append((hi - lo) / 2)
            verdict = "yes: Any2Point ahead" if lo > 0 else "yes: baseline ahead" if hi < 0 else "no"
            lines.append(f"| {backbone} | {METHODS[method]} | {len(a2p)} / {len(base)} | {acc_a:.1%} | {acc_b:.1%} | "
                         f"{d * 100:+.1f} | [{lo * 100:+.1f}, {hi * 100:+.1f}] | {verdict} |")
    if widths:
        n = ", ".join(f"{m:,} test models in {g:,} groups" for m, g in sorted(sizes))
        lines += ["", f"Resolution: {n}; 95% interval half-width {min(widths) * 100:.1f}–{max(widths) * 100:.1f} "
                      "points (median " f"{np.median(widths) * 100:.1f})."]
    return "\n".join(lines)


def ablation_table(results, boot=10000, costs=None, records=None, folds=False):
    """Each ablation against its backbone's recipe run (paired, same groups), with its cost: trainable parameters and
    training clouds/s (the run's record), forward ms per cloud (`costs`, from benchmarks/method_cost.py). folds: the
    runs are cross-validation rounds, and the val column is the mean over their records."""
    costs = costs or {}
    lines = ["| backbone | ablation (change from the recipe) | val acc (recipe → ablation) | recipe test acc | "
             "ablation test acc | difference | 95% interval | excludes 0 | trainable | train clouds/s | "
             "forward ms / cloud |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    widths = []

    def facts(backbone, key):
        """-> (val acc, 'trainable | clouds/s | ms' cells) of the ablation `key` (None: the recipe), its records read
        once (cross-validation: the mean over the folds' records). Val is what a recipe choice may look at, never
        the test columns."""
        recs = _records(records, f"ablation-{key}-{backbone}" if key else None, backbone, folds)
        rs, c = [rec["result"] for rec in recs], costs.get(f"{key or 'recipe'}-{backbone}", {})
        mean = lambda k: sum(r[k] for r in rs) / len(rs) if rs and all(k in r for r in rs) else None
        val, cps = mean("val_acc"), mean("clouds_per_s")
        trainable = rs[0].get("trainable_parameters") if rs else None
        cells = (f"{trainable:,}" if trainable is not None else "0" if rs else "—",
                 f"{cps:.1f}" if cps is not None else "—",
                 f"{c['ms_per_cloud']:.0f}" if "ms_per_cloud" in c else "—")
        return f"{val:.1%}" if val is not None else "—", " | ".join(cells)

    for backbone, method in sorted(k for k in results if k[1].startswith("ablation:")):
        base = results.get((backbone, "any2point"))
        if not base:
            continue
        pa, pb, groups = pool(results[(backbone, method)], base)
        if not groups:
            continue
        acc_a, acc_b, d, lo, hi = compare(pa, pb, boot, groups=groups)
        widths.append((hi - lo) / 2)
        key = method.removeprefix("ablation:")
        verdict = "yes: ablation ahead" if lo > 0 else "yes: recipe ahead" if hi < 0 else "no"
        (val_a, cells), val_b = facts(backbone, key), facts(backbone, None)[0]
        lines.append(f"| {backbone} | {ablation_text(key)} | {val_b} → {val_a} | {acc_b:.1%} | {acc_a:.1%} | "
                     f"{d * 100:+.1f} | [{lo * 100:+.1f}, {hi * 100:+.1f}] | {verdict} | {cells} |")
    trained = {(b, m.removeprefix("ablation:")) for b, m in results if m.startswith("ablation:")}
    for key, (backbone, _, _) in METHOD_ABLATIONS.items():  # measured but not trained: say so, with its cost
        c = costs.get(f"{key}-{backbone}")
        if (backbone, key) not in trained and c:
            lines.append(f"| {backbone} | {ablation_text(key)} | not trained here (cost only) | — | — | — | — | "
                         f"— | {c.get('trainable', 0):,} | {c.get('train_clouds_per_s', 0):.2f} | "
                         f"{c['ms_per_cloud']:.0f} |")
    for backbone in sorted({k[0] for k in results if k[1].startswith("ablation:")}):
        val_b, cells = facts(backbone, None)
        lines.append(f"| {backbone} | the recipe itself | {val_b} | — | — | — | — | — | {cells} |")
    if widths:
        lines += ["", f"Resolution: 95% interval half-width {min(widths) * 100:.1f}–{max(widths) * 100:.1f} points; "
                      "train clouds/s measured while two single-threaded runs shared the 2 cores; forward ms: one "
                      "2,048-point cloud, one thread, idle machine (benchmarks/method_cost.py)."]
    return "\n".join(lines)


def is_shipped(record, shipped):
    """Whether a run's record is the run of the shipped entry (config.json `shipped`): the same adapter weights, or
    (records from before they kept the adapter's sha256) the same training settings."""
    sha = (record.get("entry") or {}).get("adapter_sha256")
    if sha:
        return sha == (shipped.get("adapter") or {}).get("sha256")
    run, trained = record.get("run_config") or {}, shipped.get("training") or {}
    return all(run.get(k) == trained.get(k) for k in ("dataset", "epochs", "points", "seed"))


RECIPE_KEYS = ("dataset", "points", "epochs", "batch_size", "lr", "weight_decay", "decay_all", "resample", "rotate",
               "warmup_epochs", "grad_clip", "seed")


def same_recipe(record, shipped):
    """Whether a (fold) run's record trained with the shipped entry's recipe: its training settings but the split
    and the vote count, and its model settings."""
    run, trained = record.get("run_config") or {}, shipped.get("training") or {}
    return all(run.get(k) == trained.get(k) for k in RECIPE_KEYS) and \
        (record.get("entry") or {}).get("model", run.get("model")) == shipped.get("model")


def write_cards(md, benchmark, results, records=None, command=None):
    """Put each backbone's rows of the comparison table (and its resolution and protocol) into the model card of
    the shipped entry trained on this benchmark, zoo/checkpoints/any2point-<modality>-<backbone>-<benchmark> —
    only where the compared Any2Point run is that entry (its record says so), never a since-retrained one's."""
    from zoo.hub import rewrite_card
    head, rows = md.splitlines()[:2], md.splitlines()[2:]
    resolution = [r for r in rows if r.startswith("Resolution:")]
    written = []
    for backbone, modality in BACKBONES.items():
        name = f"any2point-{modality}-{backbone}-{benchmark}"
        folder = ROOT / "zoo" / "checkpoints" / name
        mine = [r for r in rows if r.startswith(f"| {backbone} |")]
        if not mine or not (folder / "config.json").exists():
            continue
        record = Path(records or "") / f"{name}.json"
        if records and record.exists() and not is_shipped(json.loads(record.read_text()),
                                                          json.loads((folder / "config.json").read_text())):
            print(f"cards: {name} left as it is: the shipped entry is not the run compared here")
            continue
        runs = results.get((backbone, "any2point"), [])
        folds = sorted({t.fold for t in runs if t.fold is not None})
        split = ("5-fold cross-validation (every model tested once)" if len(folds) == 5 else
                 f"cross-validation folds {', '.join(map(str, folds))} of 5" if folds else "the default test split")
        if folds:  # the rows are the recipe's fold runs: only for an entry trained with exactly that recipe
            fold_rec = Path(records or "") / f"{name}-fold{folds[0]}.json"
            if not (records and fold_rec.exists() and same_recipe(json.loads(fold_rec.read_text()),
                                                                  json.loads((folder / "config.json").read_text()))):
                print(f"cards: {name} left as it is: its recipe is not the one of the fold runs compared here")
                continue
            split += ("; the Any2Point rows are this entry's recipe trained once per fold (the shipped weights "
                      "are the same recipe on the default split)")
        protocol = (f"Protocol: {benchmark}, {split}; each run's best epoch on val, one pass on test (no voting); "
                    f"{len(runs)} Any2Point run(s) over seeds and folds, baselines on the same recipe and split; "
                    "a paired 95% bootstrap interval over families (kicad33) or models (SweetHome3D). Generated by "
                    f"`{command or f'python benchmarks/compare_runs.py --benchmark {benchmark} --cards'}`.")
        rewrite_card(folder, comparison=[*head, *mine, "", *resolution, "", protocol])
        written.append(folder.name)
    return written


def _records(records, name, backbone, folds=False):
    """The kept records of an ablation run, or (name None) of the backbone's Any2Point recipe run: the default
    split's one, or (folds) one per cross-validation round."""
    if not records:
        return []
    stem = re.escape(name) if name else rf"any2point-\w+-{backbone}-[a-z0-9]+"
    want = re.compile(stem + (r"-fold\d+" if folds else ""))
    return [json.loads(p.read_text()) for p in sorted(Path(records).glob("*.json")) if want.fullmatch(p.stem)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="sh3d", choices=["sh3d", "kicad33"])
    p.add_argument("--runs-dir", help="default: runs/<benchmark>")
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="best: each run's entry (best epoch on val, the protocol); last: its last epoch")
    p.add_argument("--records", help="where each run's lasting record is written and read ('' = neither; default "
                   "benchmarks/results/<the runs dir's name>)")
    p.add_argument("--no-shipped", action="store_true",
                   help="do not stand the shipped entries in for absent first-seed Any2Point runs")
    p.add_argument("--readme", help="update this file's comparison block")
    p.add_argument("--block", help="the README block's name (default: comparison, or comparison-last)")
    p.add_argument("--folds-only", action="store_true", help="compare the cross-validation runs only (not the "
                   "default split)")
    p.add_argument("--cards", action="store_true", help="also write each backbone's rows into the model card of "
                   "the shipped entry trained on this benchmark")
    p.add_argument("--ablations-block", help="also write the ablation table (each ablation against its recipe, with "
                   "its cost) into this README block")
    a = p.parse_args(argv)
    a.runs_dir = a.runs_dir or str(ROOT / "runs" / a.benchmark)
    # records mirror run folders: runs/kicad33 -> benchmarks/results/kicad33, runs/kicad33-e30 -> .../kicad33-e30
    a.records = str(ROOT / "benchmarks/results" / Path(a.runs_dir).name) if a.records is None else a.records
    results = collect(a.runs_dir, a.checkpoint, records=a.records or None, shipped=not a.no_shipped,
                      benchmark=a.benchmark)
    if a.folds_only:
        results = {k: v for k, v in ((k, [t for t in v if t.fold is not None]) for k, v in results.items()) if v}
    if not results:
        raise SystemExit(f"no finished suite runs with entries under {a.runs_dir}")
    md = table(results, a.boot)
    print(md)
    if a.readme:
        tag = a.block or ("comparison" if a.checkpoint == "best" else "comparison-last")
        update_block(a.readme, md, f"<!-- {tag}:start -->", f"<!-- {tag}:end -->")
        print(f"updated {a.readme}")
    if a.cards and a.checkpoint == "best":
        runs = Path(a.runs_dir).resolve()
        runs = runs.relative_to(ROOT) if runs.is_relative_to(ROOT) else runs
        command = (f"python benchmarks/compare_runs.py --benchmark {a.benchmark}"
                   + (f" --runs-dir {runs}" if runs != Path("runs") / a.benchmark else "")
                   + " --folds-only" * a.folds_only + " --no-shipped" * a.no_shipped + " --cards")
        written = write_cards(md, a.benchmark, results, a.records or None, command)
        print("cards:", ", ".join(written) or "no shipped entry of this benchmark")
    if any(k[1].startswith("ablation:") for k in results):
        costs_file = Path(a.records or ".") / "costs.json"
        costs = json.loads(costs_file.read_text()) if a.records and costs_file.exists() else {}
        ab = ablation_table(results, a.boot, costs, a.records or None, a.folds_only)
        print("\n" + ab)
        if a.readme and a.ablations_block:
            update_block(a.readme, ab, f"<!-- {a.ablations_block}:start -->", f"<!-- {a.ablations_block}:end -->")
            print(f"updated {a.readme} ({a.ablations_block})")


if __name__ == "__main__":
    main()
