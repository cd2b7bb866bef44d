"""The up axis: what a z-up upload costs the default entries, and what predict(up=...) gets back.

    python -m benchmarks up-axis [--data data/sh3d] [--split test] [--entries NAME ...]

On the SweetHome3D test clouds (y up, as the entries were trained) and their z-up versions (the exact rotation
core.points.reorient(p, "y", to="z"), i.e. how a CAD or scanner file of the same object arrives), per default
entry, single-pass accuracy of:
  y-up                  the clouds as trained (the reference)
  z-up, up="y"          a z-up file read as if y up: the failure users saw
  z-up, up="z"          told the truth: exactly the y-up clouds again, so exactly the reference
  z-up, up="auto"       not told: each orientation in zoo.serving.AUTO_UP scored by the model's confidence (over
                        AUTO_TURNS quarter turns) + AUTO_PRIOR x core.points.upright_prior, the best one kept
  y-up, up="auto"       what "auto" costs when the file was fine
  y-up, turn mean       the y-up clouds with the same averaging over AUTO_TURNS quarter turns that "auto" does: the
                        like-for-like reference (what "auto" gains from the averaging is not orientation skill)
plus the same two "auto" columns with all six axis-aligned up choices scored, and how often "auto" picked the
true up. The auto settings were chosen on the val split (--split val), not on test. 60 test models: one model is
1.7 points, the binomial standard error of an accuracy near 55% is ~6.4.
Writes benchmarks/results/up_axis.json (up_axis_<split>.json for other splits; up_axis_<data>[_<split>].json for
another benchmark, e.g. --data data/kicad33 --entries <its entries>), prints a markdown table and with --readme
docs/RESULTS.md shows it (`python -m benchmarks render`).
Offline; batches of 16 clouds on one intra-op thread (the machine is shared); ~10 minutes on 2 shared cores.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import zoo.serving
from core.points import UP_AXES, quarter_turn, reorient
from zoo.registry import TASK_DEFAULTS, adapter_sha256, load_model

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks" / "results" / "up_axis.json"
COLUMNS = ("y-up", 'z-up, up="y"', 'z-up, up="z"', 'z-up, up="auto"', 'y-up, up="auto"', "y-up, turn mean",
           'z-up, auto over 6 axes', 'y-up, auto over 6 axes')


def evaluate(model, clouds, targets, six_axes=True):
    """{column: accuracy}, plus how often each "auto" picked the cloud's true up."""
    z_up = [reorient(p, "y", to="z") for p in clouds]
    labels = np.asarray(targets)

    def acc(results):
        guess = [model.labels.index(max(r, key=r.get)) for r in results]
        return float((np.asarray(guess) == labels).mean())

    out, picks = {}, {}
    out["y-up"] = acc(model.predict_batch(clouds))
    turned = [model.predict_batch([quarter_turn(p, k) for p in clouds]) for k in range(zoo.serving.AUTO_TURNS)]
    out["y-up, turn mean"] = acc([{c: np.mean([t[i][c] for t in turned]) for c in model.labels}
                                  for i in range(len(clouds))])
    out['z-up, up="y"'] = acc(model.predict_batch(z_up, up="y"))
    out['z-up, up="z"'] = acc(model.predict_batch(z_up, up="z"))
    for axes, suffix in ((zoo.serving.AUTO_UP, 'up="auto"'), *[(tuple(UP_AXES), "auto over 6 axes")] * six_axes):
        saved, zoo.serving.AUTO_UP = zoo.serving.AUTO_UP, axes
        try:
            for name, data, truth in (("z-up", z_up, "z"), ("y-up", clouds, "y")):
                res = model.predict_batch(data, up="auto", with_up=True)
                out[f"{name}, {suffix}"] = acc([r for r, _ in res])
                picks[f"{name}, {suffix}"] = float(np.mean([u == truth for _, u in res]))
        finally:
            zoo.serving.AUTO_UP = saved
    return out, picks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data" / "sh3d"))
    p.add_argument("--split", default="test")
    p.add_argument("--entries", nargs="*", help="default: the furniture defaults (sh3d) or that task's defaults")
    p.add_argument("--limit", type=int, help="a seeded random subset of this many clouds of the split")
    p.add_argument("--no-six-axes", action="store_true", help="skip the six-axis columns (24 forwards a cloud)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bench = "kicad33" if "kicad" in Path(a.data).name else "sh3d"
    if bench == "kicad33":
        from train.data.kicad import Kicad33 as Dataset
    else:
        from train.data.sh3d import SH3D as Dataset
    ds = Dataset(a.data, a.split)
    zoo.serving.INFERENCE_THREADS = 1  # accuracy does not depend on it; other jobs share these cores
    keep = range(len(ds))
    if a.limit and a.limit < len(ds):  # a seeded subset: the six-axis and eight-forward columns are costly
        keep = sorted(np.random.default_rng(0).choice(len(ds), a.limit, replace=False).tolist())
    clouds, targets = [ds.points[i] for i in keep], [ds.targets[i] for i in keep]
    rows = {}
    for name in a.entries or list(TASK_DEFAULTS[bench].values()):
        model = load_model(name)
        if list(model.labels) != list(ds.labels):
            raise SystemExit(f"{name}: labels differ from the dataset's")
        t = time.perf_counter()
        acc, picks = evaluate(model, clouds, targets, six_axes=not a.no_six_axes)
        rows[name] = dict(accuracy=acc, auto_picked_true_up=picks, seconds=round(time.perf_counter() - t, 1),
                          adapter_sha256=adapter_sha256(name))  # which weights: entries are retrained by name
        print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr)
    record = dict(benchmark="up_axis", data=bench, split=a.split, clouds=len(clouds), split_size=len(ds),
                  auto_up=list(zoo.serving.AUTO_UP), auto_turns=zoo.serving.AUTO_TURNS,
                  auto_prior=zoo.serving.AUTO_PRIOR, date=time.strftime("%Y-%m-%d"), host=platform.node(),
                  cpus=os.cpu_count(), results=rows)
    stem = "up_axis" + ("" if bench == "sh3d" else f"_{bench}") + ("" if a.split == "test" else f"_{a.split}")
    out = OUT.with_name(f"{stem}.json")
    record["results"] = {**kept_rows(out, record), **rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))


def kept_rows(path, record):
    """The rows of the record at `path` that `record` can join (same clouds, settings and columns): rerunning one
    retrained entry keeps the others' rows."""
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    same = ("data", "split", "clouds", "split_size", "auto_up", "auto_turns", "auto_prior")
    if any(old.get(k) != record[k] for k in same) or not old.get("results") or not record["results"]:
        return {}
    columns = {frozenset(r["accuracy"]) for r in [*old["results"].values(), *record["results"].values()]}
    return old["results"] if len(columns) == 1 else {}


def table(record):
    where = {"sh3d": "SweetHome3D", "kicad33": "kicad33"}.get(record["data"], record["data"])
    first = next(iter(record["results"].values()))
    cols = [c for c in COLUMNS if c in first["accuracy"]]
    subset = record.get("split_size", 0) > record["clouds"]
    of = f" (a seeded {record['clouds']} of {record['split_size']})" if subset else ""
    lines = [f"{where} {record['split']} split{of}, {record['clouds']} models, accuracy (%); \"auto\" scores "
             f"{', '.join(record['auto_up'])} over {record.get('auto_turns', 2)} quarter turns; gap = z-up "
             "\"auto\" minus the y-up single pass", "",
             "| entry | " + " | ".join(cols) + " | gap |", "|---|" + "---|" * (len(cols) + 1)]
    for name, r in record["results"].items():
        gap = 100 * (r["accuracy"]['z-up, up="auto"'] - r["accuracy"]["y-up"])
        lines.append(f"| `{name}` | " + " | ".join(f"{100 * r['accuracy'][c]:.1f}" for c in cols) + f" | {gap:+.1f} |")
    picks = list(first["auto_picked_true_up"])
    lines += ["", "How often \"auto\" picked the true up axis (%):", "",
              "| entry | " + " | ".join(picks) + " |", "|---|" + "---|" * len(picks)]
    for name, r in record["results"].items():
        lines.append(f"| `{name}` | " + " | ".join(f"{100 * r['auto_picked_true_up'][c]:.1f}" for c in picks) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
