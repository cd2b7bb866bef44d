"""The runs of a campaign as a table, from their records (benchmarks/results/<campaign>/*.json; never typed by hand).

    python -m benchmarks table --records benchmarks/results/kicad33-e30

One row per recipe (backbone, method, ablation, shots) and split: runs of one recipe at several seeds or folds make
one row, the mean with the standard deviation over the runs after a ±.
"""
import argparse
import statistics

from benchmarks.suite import ablation_text
from train.record import load_records

METHODS = {"any2point": "Any2Point", "linear_probe": "linear probe (frozen, PE on, no adapters)",
           "from_scratch": "from scratch (same tokenizer, 4x128 transformer)",
           "random_backbone": "control: Any2Point on the same backbone with random weights (frozen)",
           "pointnext": "PointNeXt-S (from scratch, its own input)"}
ORDER = {"vision": 0, "language": 1, "audio": 2}


def describe(record):
    """What a run is, from its record's fields."""
    if record.ablation:
        return f"Any2Point ablation: {ablation_text(record.ablation)}"
    text = METHODS.get(record.method, record.method)
    if record.method == "any2point":
        pe = ((record.entry or {}).get("model") or {}).get("pe")
        text += f" ({pe.upper()} projection)" if pe in ("1d", "2d") else ""  # a recipe's explicit projection
    return text


def split_of(records):
    folds = sorted({r.fold for r in records if r.fold is not None})
    return "default" if not folds else f"folds {folds[0]}–{folds[-1]}" if len(folds) > 1 else f"fold {folds[0]}"


def rows(records):
    """Finished records -> one dict per recipe and split, with the runs' values in lists (first-seen order)."""
    groups = {}
    for r in records:
        if r.done:
            groups.setdefault((r.recipe, r.fold is None), []).append(r)
    out = []
    for (recipe, _), rs in groups.items():
        res = [r.result for r in rs]
        first = rs[0]
        out.append(dict(backbone=first.backbone, modality=(first.entry or {}).get("modality", ""),
                        method=describe(first), main=first.method == "any2point" and not first.ablation,
                        shots=first.shots, split=split_of(rs), runs=len(rs),
                        acc=[x["test_acc"] for x in res], vote=[x["test_acc_vote"] for x in res],
                        mca=[x["test_mean_class_acc"] for x in res], val=[x["val_acc"] for x in res],
                        minutes=[x["train_seconds"] / 60 for x in res], params=res[0].get("trainable_parameters"),
                        votes=sorted({x.get("votes") or 10 for x in res})))
    return sorted(out, key=lambda x: (ORDER.get(x["modality"], 3), x["backbone"], not x["main"], x["method"],
                                      x["shots"] or 0, x["split"]))


def cell(values, pct=True):
    mean = statistics.fmean(values)
    text = f"{mean:.1%}" if pct else f"{mean:.1f}"
    if len(values) > 1:
        sd = statistics.stdev(values)
        text += f" ± {sd * 100:.1f}" if pct else f" ± {sd:.1f}"
    return text


def table(rs):
    votes = sorted({v for x in rs for v in x["votes"]})
    shots = any(x["shots"] for x in rs)
    lines = [f"| backbone | method |{' shots |' * shots} split | test acc | test acc ({'/'.join(map(str, votes))}-vote) "
             "| mean class acc | val acc | trainable params | train time (min, CPU) | runs (seeds × folds) |",
             "|---|---|" + "---|" * shots + "---|---|---|---|---|---|---|---|"]
    for x in rs:
        params = f"{x['params']:,}" if x["params"] is not None else "—"
        lines.append(f"| {x['backbone']} ({x['modality']}) | {x['method']} |"
                     + (f" {x['shots'] or 'all'} |" if shots else "")
                     + f" {x['split']} | {cell(x['acc'])} | {cell(x['vote'])} | {cell(x['mca'])} | {cell(x['val'])} | "
                     f"{params} | {cell(x['minutes'], pct=False)} | {x['runs']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, help="a folder of run records (benchmarks/results/<campaign>)")
    a = p.parse_args(argv)
    rs = rows(load_records(a.records))
    if not rs:
        raise SystemExit(f"no finished run records under {a.records}")
    print(table(rs))


if __name__ == "__main__":
    main()
