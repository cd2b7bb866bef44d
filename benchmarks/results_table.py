"""Build the SweetHome3D results table from the runs' logs (never typed by hand).

    python benchmarks/results_table.py [--benchmark sh3d|kicad33] [--runs-dir runs/<benchmark>] [--readme README.md]

Reads each run's result.json (written by train/run.py at the end) and prints a markdown table; with --readme it
replaces the block between <!-- results:start --> and <!-- results:end --> in that file. Runs of one recipe at
several seeds (`<run>`, `<run>-seed1`, ...; see benchmarks/suite.py --seeds) make one row: the mean, and the
standard deviation over seeds after a ±.
"""
import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import ablation_text  # noqa: E402
from zoo import specs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def describe(name, cfg):
    model = cfg.get("model", {})
    if cfg.get("variant") == "linear_probe":
        return "linear probe (frozen, PE on, no adapters)"
    if cfg.get("variant") == "from_scratch":
        return "from scratch (same tokenizer, 4x128 transformer)"
    if cfg.get("variant") == "random_backbone":
        return "control: Any2Point on the same backbone with random weights (frozen)"
    m = re.match(r"ablation-([\w-]+)-(?:dinov2s|minilm|whisper)", name)
    if m:  # what the ablation changed from its recipe (the recipe may itself set a projection)
        return f"Any2Point ablation: {ablation_text(m.group(1))}"
    parts = []
    if model.get("pe") == "none":
        parts.append("no PE")
    if model.get("guided") is False:
        parts.append("no guided adapter")
    if parts:
        return f"Any2Point ablation: {', '.join(parts)}"
    pe = model.get("pe")
    return f"Any2Point ({pe.upper()} projection)" if pe in ("1d", "2d") else "Any2Point"


def _read(path):
    return json.loads(path.read_text()) if path.exists() else {}


def rows(runs_dir, records=None):
    """One row per finished run under runs_dir, and per kept record (benchmarks/compare_runs.py writes them) of a
    run whose folder is gone."""
    found = [(f.parent.name, _read(f), _read(f.parent / "run_config.json"), _read(f.parent / "entry/config.json"))
             for f in sorted(Path(runs_dir).glob("*/result.json"))]
    have = {name for name, *_ in found}
    for f in sorted(Path(records).glob("*.json")) if records else []:
        rec = json.loads(f.read_text())
        if "run" in rec and rec["run"] not in have:  # costs.json lives beside the records
            found.append((rec["run"], rec["result"], rec["run_config"], rec["entry"]))
    out = []
    for name, r, cfg, entry in found:
        cfg = dict(cfg)
        cfg["model"] = entry.get("model") or cfg.get("model", {})
        backbone = specs.short_name(cfg["backbone"]) if cfg.get("backbone") else "?"
        out.append(dict(run=name, backbone=backbone, modality=entry.get("modality", ""),
                        method=describe(name, {**cfg, "variant": entry.get("variant", cfg.get("variant"))}),
                        acc=r["test_acc"], vote=r["test_acc_vote"], mca=r["test_mean_class_acc"],
                        val=r["val_acc"], params=r["trainable_parameters"], minutes=r["train_seconds"] / 60,
                        epochs=r["epochs"], cps=r["clouds_per_s"], votes=r.get("votes")))
    order = {"vision": 0, "language": 1, "audio": 2}
    main = lambda x: x["method"].startswith("Any2Point") and "ablation" not in x["method"]  # noqa: E731
    return sorted(out, key=lambda x: (order.get(x["modality"], 3), not main(x), x["method"], x["run"]))


METRICS = ("acc", "vote", "mca", "val", "minutes")


def by_recipe(rs):
    """Rows of one recipe at several seeds or folds -> one row with lists of values (in first-seen order)."""
    groups = {}
    for x in rs:
        key = re.sub(r"(-seed\d+)?(-fold\d+)?$", "", x["run"])
        g = groups.setdefault(key, dict(x, run=key, seeds=0, **{m: [] for m in METRICS}))
        g["seeds"] += 1
        for m in METRICS:
            g[m].append(x[m])
    return list(groups.values())


def cell(values, pct=True):
    mean = statistics.fmean(values)
    text = f"{mean:.1%}" if pct else f"{mean:.1f}"
    if len(values) > 1:
        sd = statistics.stdev(values)
        text += f" ± {sd * 100:.1f}" if pct else f" ± {sd:.1f}"
    return text


def table(rs):
    votes = sorted({x.get("votes") or 10 for x in rs})
    lines = [f"| backbone | method | test acc | test acc ({'/'.join(map(str, votes))}-vote) | mean class acc | val acc "
             "| trainable params | train time (min, CPU) | runs (seeds × folds) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in by_recipe(rs):
        lines.append(f"| {x['backbone']} ({x['modality']}) | {x['method']} | {cell(x['acc'])} | {cell(x['vote'])} | "
                     f"{cell(x['mca'])} | {cell(x['val'])} | {x['params']:,} | {cell(x['minutes'], pct=False)} | "
                     f"{x['seeds']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="sh3d", choices=["sh3d", "kicad33"])
    p.add_argument("--runs-dir", help="default: runs/<benchmark>")
    p.add_argument("--records", help="kept run records (benchmarks/compare_runs.py) for runs whose folders are gone; "
                   "'' = none; default benchmarks/results/<the runs dir's name>")
    p.add_argument("--readme", help="update this file's results block")
    p.add_argument("--block", default="results", help="the README block's name")
    a = p.parse_args(argv)
    a.runs_dir = a.runs_dir or str(ROOT / "runs" / a.benchmark)
    # records mirror run folders: runs/kicad33 -> benchmarks/results/kicad33, runs/kicad33-e30 -> .../kicad33-e30
    a.records = str(ROOT / "benchmarks/results" / Path(a.runs_dir).name) if a.records is None else a.records
    rs = rows(a.runs_dir, a.records or None)
    if not rs:
        raise SystemExit(f"no finished runs (result.json) under {a.runs_dir}")
    md = table(rs)
    print(md)
    if a.readme:
        update_block(a.readme, md, f"<!-- {a.block}:start -->", f"<!-- {a.block}:end -->")
        print(f"updated {a.readme}")


def update_block(path, md, start=START, end=END):
    """Replace the text between the start and end markers in `path` with `md` (append the block if absent)."""
    text = Path(path).read_text()
    block = f"{start}\n{md}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += f"\n{block}\n"
    Path(path).write_text(text)


if __name__ == "__main__":
    main()
