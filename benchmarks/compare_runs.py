"""Is Any2Point ahead of its baselines on test by more than the noise? Paired comparisons read from run records.

    python -m benchmarks compare --records benchmarks/results/kicad33-e30 [--folds-only] [--boot 10000]
    python -m benchmarks compare --verify runs/kicad33-e30 [--records benchmarks/results/kicad33-e30]
    python -m benchmarks compare --import-run runs/old/<run> [--ablation KEY] --records benchmarks/results/<campaign>
    python -m benchmarks compare --per-class RECORD_A.json RECORD_B.json [--data-root data/kicad33]

Each finished run leaves a record (train/record.py) with which test models its best-on-val model got right. Per
backbone, Any2Point minus each baseline (linear probe, from scratch, the random-backbone control, PointNeXt): each
test model's correctness is averaged over the seeds a method has, cross-validation folds are pooled (each fold tests
other models: over 5 folds every model once), the difference is averaged over the test models, and a 95% interval
comes from a paired bootstrap over *groups* (both methods see the same resampled groups): the families on kicad33
(parametric variants of one design are not independent), the models on SweetHome3D. An interval that contains 0
means the benchmark cannot tell the two apart; every table states its resolution. Each ablation is paired the same
way against its backbone's recipe run, with its cost.

--verify re-evaluates every finished run folder's entry on test and checks it against result.json and the run's
record. --import-run makes the record of a run folder trained before train/run.py wrote records (its key comes from
its run_config.json and --ablation, never from its name). --per-class splits two runs' test accuracy by class (the
classes from the build the runs tested on): where one method loses to another. The tables in the docs are written by
`python -m benchmarks render`.
"""
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks.suite import METHOD_ABLATIONS, POINTNEXT_LONGER, ablation_text, recipe, recipe_name
from train.record import RunRecord, load_records

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"any2point": "Any2Point", "linear_probe": "linear probe", "from_scratch": "from scratch",
           "random_backbone": "random frozen backbone (control)", "pointnext": "PointNeXt-S (from scratch)"}
BASELINES = ("linear_probe", "from_scratch", "random_backbone", "pointnext")  # the order of a table's rows


# PointNeXt-S's schedules (issue #26): its recipe file's (no ablation) and the longer ones (suite.POINTNEXT_LONGER: the
# 100 epochs our kicad33 and furniture entries train). The baseline gets the schedule length ours got, chosen on val as
# ours is; a diagnostic run of it (points-512) is never the baseline.
POINTNEXT_SCHEDULES = (None, *POINTNEXT_LONGER)


def pointnext_schedule(records):
    """The PointNeXt-S runs of one comparison (one benchmark, k and split) -> the ablation of the schedule val
    chooses among POINTNEXT_SCHEDULES: the best mean val over the draws (seed, fold) the recipe file's runs have; a
    schedule missing one of those draws waits for it, and a tie keeps the recipe file's (None)."""
    vals = {}
    for r in records:
        if r.done and r.method == "pointnext" and r.ablation in POINTNEXT_SCHEDULES:
            vals.setdefault(r.ablation, {})[(r.seed, r.fold)] = (r.result or {}).get("val_acc")
    draws = list(vals.get(None, {}))
    means = {a: np.mean([v[d] for d in draws]) for a, v in vals.items()
             if draws and all(v.get(d) is not None for d in draws)}
    return max(means, key=lambda a: (means[a], a is None), default=None)


@dataclasses.dataclass
class Tested:
    """One run's test outcome: which test models it got right (0/1), their bootstrap groups, its fold."""
    correct: np.ndarray
    groups: list
    fold: int | None = None


def method_key(record):
    """What a run is compared as: its method, or "ablation:<key>" for an ablation of a recipe (Any2Point's, or
    PointNeXt-S's schedule); a baseline under a recipe's label keeps its method ("linear_probe:ablation:<key>"), so
    it never pools with the Any2Point runs of the same label."""
    if not record.ablation:
        return record.method
    return ("" if record.method in ("any2point", "pointnext") else f"{record.method}:") + f"ablation:{record.ablation}"


def collect(records, folds_only=False, shots=None):
    """Run records -> {(backbone, method key): [Tested, one per seed and fold]} of the runs with `shots` training
    models per class (None: the whole training split); folds_only: the cross-validation runs only."""
    out = {}
    for r in records:
        if not r.done or r.shots != shots or (folds_only and r.fold is None):
            continue
        out.setdefault((r.backbone, method_key(r)), []).append(
            Tested(np.asarray(r.test_correct, dtype=float), r.groups(), r.fold))
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


def table(results, boot=10000, backbones=None):
    """The comparison table (of `backbones`, default all); its last line states the resolution (test models,
    groups, interval half-width)."""
    lines = ["| backbone | Any2Point vs | runs (A2P / baseline) | Any2Point test acc | baseline test acc | "
             "difference | 95% interval (paired bootstrap over groups) | excludes 0 |",
             "|---|---|---|---|---|---|---|---|"]
    sizes, widths = set(), []
    for backbone in sorted({k[0] for k in results} if backbones is None else backbones):
        a2p = results.get((backbone, "any2point"))
        for method in BASELINES:
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


def ablation_table(results, records, boot=10000, costs=None, folds=False, base=None, only=None):
    """Each ablation against its backbone's recipe run (paired, same groups), with its cost: trainable parameters and
    training clouds/s (the runs' records), forward ms per cloud (`costs`, from `python -m benchmarks method-cost`).
    folds: the runs are cross-validation rounds, and the val and cost columns are means over their records.
    base: an ablation key whose runs stand in for the recipe's (a candidate built on it against it); only: the
    ablation keys to list (default: all)."""
    costs = costs or {}
    ref, new = ("recipe", "ablation") if base is None else ("base", "candidate")
    lines = [f"| backbone | {new} (change from the {ref}) | val acc ({ref} → {new}) | {ref} test acc | "
             f"{new} test acc | difference | 95% interval | excludes 0 | trainable | train clouds/s | "
             "forward ms / cloud |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    widths = []

    def facts(backbone, ablation, only_folds=None):
        """-> (val acc, 'trainable | clouds/s | ms' cells) of an ablation (None: the recipe) from its records: the
        default split's, or (folds) the mean over the cross-validation rounds'. Val is what a recipe choice may
        look at, never the test columns."""
        rs = [r.result for r in records if r.done and r.backbone == backbone and r.ablation == ablation
              and r.method == "any2point" and r.shots is None and (r.fold is not None) == folds
              and (only_folds is None or r.fold in only_folds)]
        mean = lambda k: sum(r[k] for r in rs) / len(rs) if rs and all(k in r for r in rs) else None  # noqa: E731
        val, cps = mean("val_acc"), mean("clouds_per_s")
        c = costs.get(f"{ablation or 'recipe'}-{backbone}", {})
        trainable = rs[0].get("trainable_parameters") if rs else None
        cells = (f"{trainable:,}" if trainable is not None else "—", f"{cps:.1f}" if cps is not None else "—",
                 f"{c['ms_per_cloud']:.0f}" if "ms_per_cloud" in c else "—")
        return f"{val:.1%}" if val is not None else "—", " | ".join(cells)

    base_method = "any2point" if base is None else f"ablation:{base}"
    for backbone, method in sorted(k for k in results if k[1].startswith("ablation:")):
        key = method.removeprefix("ablation:")
        base_runs = results.get((backbone, base_method))
        if not base_runs or key == base or (only is not None and key not in only):
            continue
        pa, pb, groups = pool(results[(backbone, method)], base_runs)
        if not groups:
            continue
        acc_a, acc_b, d, lo, hi = compare(pa, pb, boot, groups=groups)
        widths.append((hi - lo) / 2)
        verdict = f"yes: {new} ahead" if lo > 0 else f"yes: {ref} ahead" if hi < 0 else "no"
        # val over the folds the ablation has run, so a partial set is compared with the same folds of the recipe
        have = {t.fold for t in results[(backbone, method)]}
        partial = folds and have != {t.fold for t in base_runs}
        (val_a, cells), val_b = facts(backbone, key), facts(backbone, base, have if folds else None)[0]
        where = f" (folds {', '.join(str(f) for f in sorted(have))})" if partial else ""
        lines.append(f"| {backbone} | {ablation_text(key)} | {val_b} → {val_a}{where} | {acc_b:.1%} | {acc_a:.1%} | "
                     f"{d * 100:+.1f} | [{lo * 100:+.1f}, {hi * 100:+.1f}] | {verdict} | {cells} |")
    trained = {(b, m.removeprefix("ablation:")) for b, m in results if m.startswith("ablation:")}
    for key in METHOD_ABLATIONS if base is None else ():  # measured but not trained: say so, with its cost
        for name, c in costs.items():
            backbone = name.removeprefix(f"{key}-")
            if name.startswith(f"{key}-") and backbone in {b for b, _ in results} and (backbone, key) not in trained:
                lines.append(f"| {backbone} | {ablation_text(key)} | not trained here (cost only) | — | — | — | — | "
                             f"— | {c.get('trainable', 0):,} | {c.get('train_clouds_per_s', 0):.2f} | "
                             f"{c['ms_per_cloud']:.0f} |")
    for backbone in sorted({k[0] for k in results if k[1].startswith("ablation:")}):
        val_b, cells = facts(backbone, base)
        itself = "the recipe itself" if base is None else f"the base: {ablation_text(base)}"
        lines.append(f"| {backbone} | {itself} | {val_b} | — | — | — | — | — | {cells} |")
    if widths:
        lines += ["", f"Resolution: 95% interval half-width {min(widths) * 100:.1f}–{max(widths) * 100:.1f} points; "
                      "train clouds/s measured while two single-threaded runs shared the 2 cores; forward ms: one "
                      "2,048-point cloud, one thread, idle machine (`python -m benchmarks method-cost`)."]
    return "\n".join(lines)


def is_shipped(record, shipped):
    """Whether a run's record is the run of the shipped entry (config.json `shipped`): the same adapter weights, or
    (records from before they kept the adapter's sha256) the same training settings."""
    sha = (record.entry or {}).get("adapter_sha256")
    if sha:
        return sha == (shipped.get("adapter") or {}).get("sha256")
    run, trained = record.run_config or {}, shipped.get("training") or {}
    return all(run.get(k) == trained.get(k) for k in ("dataset", "epochs", "points", "seed"))


RECIPE_KEYS = ("dataset", "points", "epochs", "batch_size", "lr", "weight_decay", "decay_all", "resample", "rotate",
               "warmup_epochs", "grad_clip", "seed")


def same_recipe(record, shipped):
    """Whether a (fold) run's record trained with the shipped entry's recipe: its training settings but the split
    and the vote count, and its model settings."""
    run, trained = record.run_config or {}, shipped.get("training") or {}
    return all(run.get(k) == trained.get(k) for k in RECIPE_KEYS) and \
        (record.entry or {}).get("model", run.get("model")) == shipped.get("model")


# the model settings a baseline must share with an entry to be compared with it (its variant changes the rest)
TOKENIZER_KEYS = ("num_points", "num_tokens", "tokenizer", "k", "tokenizer_dim", "pointpn_stages", "pointpn_embed_dim",
                  "pointpn_widths", "pointpn_hidden", "pointpn_blocks")


def _tokenizer(model, keys=TOKENIZER_KEYS):
    """The tokenizer settings of a model config dict (an entry's or a record's "model")."""
    return {k: v for k, v in (model or {}).items() if k in keys}


def _model(record):
    return (record.entry or {}).get("model") or (record.run_config or {}).get("model") or {}


# what a recipe file sets of the tokenizer: all but num_points, which train/run.py sets from the run's points
_RECIPE_TOKENIZER_KEYS = tuple(k for k in TOKENIZER_KEYS if k != "num_points")


# the method ablations that became the recipe, most specific first: pointpn-cpu-e100 is pointpn-cpu on the furniture
# recipe's 100 epochs (the Whisper entry's; its baselines train the same schedule)
RECIPE_LABELS = ("pointpn-cpu-e100", "pointpn-cpu")


def recipe_label(record, keys=RECIPE_LABELS):
    """A run without an ablation label whose model has every model setting of a method ablation in `keys` (a
    candidate that became the recipe: such runs were trained after the choice) labelled with the first such key, so
    the tables tell it from the earlier recipe's runs of the same method and backbone, which carry no label either.
    A key's settings beyond the last key's that are not model settings (a schedule) must match the run's settings."""
    if record.ablation or record.method == "pointnext":
        return record
    from train.run import parse_setting
    model, run = _model(record), record.run_config or {}
    base = set(METHOD_ABLATIONS[keys[-1]][2])
    for key in keys:
        settings = [(kv in base, *parse_setting(kv)) for kv in METHOD_ABLATIONS[key][2]]
        if all(model.get(k.removeprefix("model.")) == v for _, k, v in settings if k.startswith("model.")) and \
                all(k in run and run[k] == v for in_base, k, v in settings if not in_base and "." not in k):
            return dataclasses.replace(record, ablation=key)
    return record


def _config_tokenizer(dataset, short):
    """The tokenizer settings train/configs/<dataset>_<short>.toml trains, as an entry's config.json stores them."""
    from train.run import load_config
    return _tokenizer(load_config(recipe(dataset, short))["model"].to_dict(), _RECIPE_TOKENIZER_KEYS)


def _full_data(records, dataset, folds):
    """The finished runs on `dataset`'s whole training split: the fold runs (folds) or the default split's."""
    return [r for r in records if r.done and r.shots is None and (r.fold is not None) == folds
            and r.benchmark == dataset]


def card_records(shipped, records, folds_only=False):
    """The records a shipped entry's card compares -> (records relabelled for `collect`, folds used): the Any2Point
    runs of the entry (its weights on the default split; with folds_only, its recipe trained once per fold, whatever
    label a run had when the recipe was a candidate, else its weights), the linear-probe / from-scratch / control
    runs on the same recipe and tokenizer, and PointNeXt-S on the same data and split (its own recipe)."""
    from zoo.specs import short_name
    backbone = short_name(shipped["backbone"]["spec"])
    dataset = shipped["training"]["dataset"]
    tokenizer = _tokenizer(shipped.get("model"))

    def mine(folds):
        check = same_recipe if folds else is_shipped
        return [r for r in records if r.done and r.backbone == backbone and r.method == "any2point"
                and r.shots is None and (r.fold is not None) == folds and check(r, shipped)]

    folds = folds_only and bool(mine(True))
    a2p = mine(folds)
    if not a2p:
        raise ValueError(f"no Any2Point record of {backbone} is this entry's "
                         f"{'recipe or weights' if folds_only else 'weights'}")
    trained = shipped.get("training") or {}
    out = [dataclasses.replace(r, ablation=None) for r in a2p]
    same_data = _full_data(records, dataset, folds)
    schedule = pointnext_schedule(same_data)
    for r in same_data:
        if r.method == "pointnext":
            if r.ablation == schedule:  # its own recipe on val's schedule; never a diagnostic run (e.g. 512 points)
                out.append(dataclasses.replace(r, backbone=backbone, ablation=None))
        elif r.backbone == backbone and r.method in BASELINES and not r.ablation and \
                all((r.run_config or {}).get(k) == trained.get(k) for k in RECIPE_KEYS if k != "seed") and \
                _tokenizer(_model(r)) == tokenizer:
            out.append(r)
    return out, folds


def card_comparison(entry_dir, records, folds_only=False, boot=10000, campaign=None):
    """The model card's "Compared with baselines" lines of the shipped entry in `entry_dir` (card_records: its own
    runs, the baselines of its recipe, PointNeXt-S), their resolution and protocol, and the suite command for a
    baseline not yet run on this recipe (into runs/<campaign>). ValueError where no record is this entry's run."""
    shipped = json.loads((Path(entry_dir) / "config.json").read_text())
    from zoo.specs import short_name
    backbone, dataset = short_name(shipped["backbone"]["spec"]), shipped["training"]["dataset"]
    try:
        selected, folds = card_records(shipped, records, folds_only)
    except ValueError as err:
        raise ValueError(f"{entry_dir}: {err}") from None
    results = collect(selected, folds)
    rows = table(results, boot, backbones=[backbone]).splitlines()
    mine = [r for r in selected if r.method == "any2point"]
    missing = [m for m in ("linear_probe", "from_scratch") if (backbone, m) not in results]
    if missing:
        short = recipe_name(dataset, backbone)
        what = f"Not yet run on this entry's recipe: {', '.join(METHODS[m] for m in missing)}"
        if _config_tokenizer(dataset, short) != _tokenizer(shipped.get("model"), _RECIPE_TOKENIZER_KEYS):
            rows += ["", f"{what} (the entry predates the tokenizer of train/configs/{dataset}_{short}.toml, so the "
                         "suite would train another recipe's baselines: retrain the entry first)."]
        else:
            names = " ".join(f"baseline-{m.replace('_', '-')}-{short}" for m in missing)
            where = " --folds 0 1 2 3 4" if folds else ""
            rows += ["", f"{what} (`python -m benchmarks suite --benchmark {dataset} --no-ablations{where} --only "
                         f"{names} --runs-dir runs/{campaign or '<campaign>'}`)."]
    fold_ids = sorted({r.fold for r in mine if r.fold is not None})
    split = ("5-fold cross-validation (every model tested once)" if len(fold_ids) == 5 else
             f"cross-validation folds {', '.join(map(str, fold_ids))} of 5" if fold_ids else "the default test split")
    if fold_ids:
        split += ("; the Any2Point rows are this entry's recipe trained once per fold (the shipped weights are the "
                  "same recipe on the default split)")
    chosen = pointnext_schedule(_full_data(records, dataset, folds))
    schedule = f", {chosen}: the schedule val chose over the file's" if chosen else ""
    protocol = (f"Protocol: {dataset}, {split}; each run's best epoch on val, one pass on test "
                f"(no voting); {len(mine)} Any2Point run(s) over seeds and folds, baselines on the same recipe and "
                "split, PointNeXt-S (torch-pointcloud `pointnext-sm`, from scratch) on its own recipe "
                f"(train/configs/{dataset}_pointnext.toml{schedule}) and the same split; a paired 95% "
                "bootstrap interval over families (kicad33) or models (SweetHome3D). Generated by "
                "`python -m benchmarks render` from the run records.")
    return [*rows, "", protocol]


def per_class(a, b, data_root=None):
    """Two runs' records on the same test models -> [(class, test models, right by a, right by b)], the classes read
    from the build both tested on (data_root, else the runs' own); ValueError where the runs or the build differ."""
    from train.data import dataset_spec
    if (a.benchmark, a.fold, a.groups()) != (b.benchmark, b.fold, b.groups()):
        raise ValueError(f"{a.name} and {b.name} did not test the same models (benchmark, fold or test groups differ)")
    root = Path(data_root or (a.run_config or {}).get("data_root") or f"data/{a.benchmark}")
    test = dataset_spec(a.benchmark)[0].load(root if root.is_absolute() else ROOT / root, "test", num_points=1,
                                             fold=a.fold)
    if len(test) != len(a.test_correct) or list(test.groups) != a.groups():
        raise ValueError(f"the test split of {root} is not the one {a.name} tested on (another build?)")
    out = {}
    for t, x, y in zip(test.targets, a.test_correct, b.test_correct):
        n, ra, rb = out.get(test.labels[t], (0, 0, 0))
        out[test.labels[t]] = (n + 1, ra + x, rb + y)
    return [(c, *v) for c, v in out.items()]


def per_class_table(a, b, rows):
    """Markdown: one row per class, b's accuracy minus a's, the classes b loses most first."""
    lines = [f"| class | test models | {a.name} (a) | {b.name} (b) | b − a (points) | b − a (models right) |",
             "|---|---|---|---|---|---|"]
    for c, n, ra, rb in sorted(rows, key=lambda r: (r[3] - r[2], r[0])):
        lines.append(f"| {c} | {n} | {ra / n:.1%} | {rb / n:.1%} | {(rb - ra) / n * 100:+.1f} | {rb - ra:+d} |")
    n, ra, rb = (sum(r[i] for r in rows) for i in (1, 2, 3))
    lines.append(f"| all | {n} | {ra / n:.1%} | {rb / n:.1%} | {(rb - ra) / n * 100:+.1f} | {rb - ra:+d} |")
    return "\n".join(lines)


def verify(runs_dir, records_dir=None, checkpoint="best"):
    """Re-evaluate every finished run folder under runs_dir; exits on a run whose entry does not reproduce its
    result.json or its record. -> {run name: test accuracy}."""
    from train.evaluate import test_correct
    out = {}
    for res in sorted(Path(runs_dir).glob("*/result.json")):
        run = res.parent
        if not (run / "entry" / "config.json").exists():
            continue
        correct, recorded = test_correct(run, checkpoint=checkpoint)[:2]
        if checkpoint == "best" and abs(correct.mean() - recorded) > 1e-6:
            raise SystemExit(f"{run.name}: re-evaluated test accuracy {correct.mean():.4f} != result.json's "
                             f"{recorded:.4f}; the entry is not the checkpoint the run reported")
        rec = next((p for p in (Path(records_dir or run) / f"{run.name}.json", run / "record.json") if p.exists()),
                   None)
        if checkpoint == "best" and rec and RunRecord.load(rec).test_correct != [int(v) for v in correct]:
            raise SystemExit(f"{run.name}: its record {rec} lists other test models as right than the entry gets")
        out[run.name] = float(correct.mean())
        print(f"{run.name}: {checkpoint} test acc {correct.mean():.4f}" + (f" (record {rec})" if rec else ""))
    return out


def import_run(run_dir, records_dir, ablation=None):
    """The record of a finished run folder that has none: its key from run_config.json (and `ablation`), which test
    models its entry gets right from a re-evaluation checked against result.json."""
    from train.evaluate import test_correct
    from train.record import RunRecord as Record
    from zoo.specs import short_name
    run = Path(run_dir)
    cfg = json.loads((run / "run_config.json").read_text())
    correct, recorded, _, groups = test_correct(run)
    if abs(correct.mean() - recorded) > 1e-6:
        raise SystemExit(f"{run.name}: re-evaluated test accuracy {correct.mean():.4f} != result.json's {recorded:.4f}")
    rec = Record(name=cfg.get("name") or run.name, benchmark=cfg["dataset"], backbone=short_name(cfg["backbone"]),
                 method=cfg.get("variant", "any2point"), ablation=ablation or cfg.get("ablation"),
                 seed=cfg.get("seed", 0), fold=cfg.get("fold"), shots=cfg.get("shots"), run_config=cfg)
    rec.finish(json.loads((run / "result.json").read_text()), json.loads((run / "entry/config.json").read_text()),
               correct, groups)
    return rec.save(Path(records_dir) / f"{rec.name}.json")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", help="a folder of run records (benchmarks/results/<campaign>)")
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--folds-only", action="store_true", help="the cross-validation runs only (not the default split)")
    p.add_argument("--costs", help="costs JSON for the ablation table (python -m benchmarks method-cost)")
    p.add_argument("--verify", metavar="RUNS_DIR", help="re-evaluate the finished runs in this folder")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="--verify: each run's entry (best on val) or its last epoch")
    p.add_argument("--import-run", metavar="RUN_DIR", help="write the record of this finished run folder into "
                   "--records")
    p.add_argument("--ablation", help="--import-run: the ablation the run is (its run_config.json may predate the field)")
    p.add_argument("--per-class", nargs=2, metavar="RECORD", help="two run records on the same test models: "
                   "accuracy per class, the second minus the first")
    p.add_argument("--data-root", help="--per-class: the build the runs tested on (default: the runs' own data_root)")
    a = p.parse_args(argv)
    if a.per_class:
        ra, rb = (RunRecord.load(x) for x in a.per_class)
        try:
            print(per_class_table(ra, rb, per_class(ra, rb, a.data_root)))
        except ValueError as err:
            raise SystemExit(f"error: {err}")
        return
    if a.import_run:
        if not a.records:
            p.error("--import-run needs --records")
        print(f"wrote {import_run(a.import_run, a.records, a.ablation)}")
        return
    if a.verify:
        verify(a.verify, a.records, a.checkpoint)
        return
    if not a.records:
        p.error("give --records (or --verify / --import-run)")
    records = load_records(a.records)
    results = collect(records, a.folds_only)
    if not results:
        raise SystemExit(f"no finished run records under {a.records}")
    print(table(results, a.boot))
    if any(k[1].startswith("ablation:") for k in results):
        costs = json.loads(Path(a.costs).read_text()) if a.costs else {}
        print("\n" + ablation_table(results, records, a.boot, costs, a.folds_only))


if __name__ == "__main__":
    main()
