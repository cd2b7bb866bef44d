"""The up axis: what a z-up upload costs the default entries, and what predict(up=...) gets back.

    python benchmarks/up_axis.py [--data data/sh3d] [--split test] [--entries NAME ...]

On the SweetHome3D test clouds (y up, as the entries were trained) and their z-up versions (the exact rotation
core.points.reorient(p, "y", to="z"), i.e. how a CAD or scanner file of the same object arrives), per default
entry, single-pass accuracy of:
  y-up                  the clouds as trained (the reference)
  z-up, up="y"          a z-up file read as if y up: the failure users saw
  z-up, up="z"          told the truth: exactly the y-up clouds again, so exactly the reference
  z-up, up="auto"       not told: each orientation in core.model.AUTO_UP scored by the model's confidence (over
                        AUTO_TURNS quarter turns) + AUTO_PRIOR x core.points.upright_prior, the best one kept
  y-up, up="auto"       what "auto" costs when the file was fine
plus the same two "auto" columns with all six axis-aligned up choices scored, and how often "auto" picked the
true up. The auto settings were chosen on the val split (--split val), not on test. 60 test models: one model is
1.7 points, the binomial standard error of an accuracy near 55% is ~6.4.
Writes benchmarks/results/up_axis.json (up_axis_<split>.json for other splits) and prints a markdown table.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import core.model  # noqa: E402
from core.points import UP_AXES, reorient  # noqa: E402
from zoo.registry import DEFAULTS, load_model  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "up_axis.json"
COLUMNS = ("y-up", 'z-up, up="y"', 'z-up, up="z"', 'z-up, up="auto"', 'y-up, up="auto"',
           'z-up, auto over 6 axes', 'y-up, auto over 6 axes')


def evaluate(model, clouds, targets):
    """{column: accuracy}, plus how often each "auto" picked the cloud's true up."""
    z_up = [reorient(p, "y", to="z") for p in clouds]
    labels = np.asarray(targets)

    def acc(results):
        guess = [model.labels.index(next(iter(r))) for r in results]
        return float((np.asarray(guess) == labels).mean())

    out, picks = {}, {}
    out["y-up"] = acc(model.predict_batch(clouds))
    out['z-up, up="y"'] = acc(model.predict_batch(z_up, up="y"))
    out['z-up, up="z"'] = acc(model.predict_batch(z_up, up="z"))
    for axes, suffix in ((core.model.AUTO_UP, 'up="auto"'), (tuple(UP_AXES), "auto over 6 axes")):
        saved, core.model.AUTO_UP = core.model.AUTO_UP, axes
        try:
            for name, data, truth in (("z-up", z_up, "z"), ("y-up", clouds, "y")):
                res = model.predict_batch(data, up="auto", with_up=True)
                out[f"{name}, {suffix}"] = acc([r for r, _ in res])
                picks[f"{name}, {suffix}"] = float(np.mean([u == truth for _, u in res]))
        finally:
            core.model.AUTO_UP = saved
    return out, picks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data" / "sh3d"))
    p.add_argument("--split", default="test")
    p.add_argument("--entries", nargs="*")
    a = p.parse_args(argv)
    from train.data.sh3d import SH3D
    ds = SH3D(a.data, a.split)
    core.model.INFERENCE_THREADS = 1  # accuracy does not depend on it; other jobs share these cores
    clouds = [ds.points[i] for i in range(len(ds))]
    rows = {}
    for name in a.entries or list(DEFAULTS.values()):
        model = load_model(name)
        if list(model.labels) != list(ds.labels):
            raise SystemExit(f"{name}: labels differ from the dataset's")
        t = time.perf_counter()
        acc, picks = evaluate(model, clouds, ds.targets)
        rows[name] = dict(accuracy=acc, auto_picked_true_up=picks, seconds=round(time.perf_counter() - t, 1))
        print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr)
    record = dict(benchmark="up_axis", data=str(Path(a.data).name), split=a.split, clouds=len(ds),
                  auto_up=list(core.model.AUTO_UP), date=time.strftime("%Y-%m-%d"), host=platform.node(),
                  cpus=os.cpu_count(), results=rows)
    out = OUT if a.split == "test" else OUT.with_name(f"up_axis_{a.split}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))


def table(record):
    lines = [f"SweetHome3D {record['split']} split, {record['clouds']} models, single-pass accuracy (%); "
             f"\"auto\" scores {', '.join(record['auto_up'])}",
             "", "| entry | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, r in record["results"].items():
        lines.append(f"| `{name}` | " + " | ".join(f"{100 * r['accuracy'][c]:.1f}" for c in COLUMNS) + " |")
    lines += ["", "How often \"auto\" picked the true up axis (%):", "",
              "| entry | " + " | ".join(next(iter(record["results"].values()))["auto_picked_true_up"]) + " |",
              "|---|" + "---|" * 4]
    for name, r in record["results"].items():
        lines.append(f"| `{name}` | " + " | ".join(f"{100 * v:.1f}" for v in r["auto_picked_true_up"].values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
