"""Regenerate every generated block of README.md, docs/ and the model cards from the records (never by hand).

    python -m benchmarks render            # rewrite the stale blocks
    python -m benchmarks render --check    # exit 1 naming each stale block (CI, tests)

The records: one JSON per training run in benchmarks/results/<campaign>/ (train/record.py), the measurement records
beside them (benchmarks/results/*.json), and each shipped entry's config.json. A block is the text between
`<!-- NAME:start -->` and `<!-- NAME:end -->` in its file; a card block is the "Compared with baselines" section of
an entry's model card (zoo/checkpoints/<entry>/README.md, kept in its config.json). Adding a table = one row in
BLOCKS (file, block name, the function that renders it from the repository root) and its markers in the file.
"""
import argparse
import dataclasses
import json
from pathlib import Path
from typing import Callable

from benchmarks.blocks import read_block, update_block
from benchmarks.suite import KICAD33_E60_CANDIDATES, POINTPN_CANDIDATES, SH3D_E100_CANDIDATES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")


def _records(root, campaign):
    from train.record import load_records
    return load_records(Path(root) / RESULTS / campaign)


def _json(root, name):
    return json.loads((Path(root) / RESULTS / name).read_text())


def runs_table(*campaigns, recipe=None):
    """The runs of `campaigns`; recipe: the method ablation that became the recipe: only the recipe's runs, its
    candidate runs shown as the recipe they now are (the other candidates have their own table)."""
    def render(root):
        from benchmarks.results_table import rows, table
        records = [dataclasses.replace(r, ablation=None) if recipe and r.ablation == recipe else r
                   for c in campaigns for r in _records(root, c) if not recipe or r.ablation in (None, recipe)]
        return table(rows(records))
    return render


def entries_comparison(task):
    """The task's shipped entries against their baselines and PointNeXt-S, one table: the rows of their model cards
    (each CardBlock's records and split), for reading side by side; an entry whose fold-only card falls back to the
    default split (its recipe has no fold runs yet) is left out."""
    def render(root):
        from benchmarks.compare_runs import card_records, collect, table
        from zoo.registry import TASK_DEFAULTS
        results = {}
        for card in sorted((b for b in BLOCKS if isinstance(b, CardBlock) and b.entry in TASK_DEFAULTS[task].values()),
                           key=lambda b: b.entry):
            shipped = json.loads((card.folder(root) / "config.json").read_text())
            selected, folds = card_records(shipped, card.records(root), card.folds_only)
            if folds == card.folds_only:
                results.update(collect(selected, folds))
        return table(results) if results else "No finished runs yet."
    return render


def comparison(campaign, folds_only=False):
    def render(root):
        from benchmarks.compare_runs import collect, table
        return table(collect(_records(root, campaign), folds_only))
    return render


def ablations(campaign, folds_only=False, costs=None):
    def render(root):
        from benchmarks.compare_runs import ablation_table, collect
        records = _records(root, campaign)
        return ablation_table(collect(records, folds_only), records, costs=_json(root, costs) if costs else None,
                              folds=folds_only)
    return render


def entries(root):
    from benchmarks.entries_table import shipped_table
    return shipped_table(root)


def adapter_use(root):
    from benchmarks.adapter_use import table
    return table(_json(root, "adapter_use.json")["results"])


def up_axis(name):
    def render(root):
        from benchmarks.up_axis import table
        return table(_json(root, name))
    return render


def busy_cpu(root):
    from benchmarks.busy_cpu import table
    return table(_json(root, "busy_cpu.json"))


def costs(name):
    def render(root):
        c = _json(root, name)
        lines = ["| backbone | end to end ms / cloud | bare backbone ms | end to end / bare | tokenizer ms | "
                 "train clouds/s | trainable |", "|---|---|---|---|---|---|---|"]
        for key in sorted(k for k in c if k.startswith("recipe-")):
            r = c[key]
            lines.append(f"| {key.removeprefix('recipe-')} | {r['ms_per_cloud']:.1f} | {r['bare_ms']:.1f} | "
                         f"{r['end_to_end_over_bare']:.2f}x | {r['tokenizer_ms']:.1f} | {r['train_clouds_per_s']:.1f} | "
                         f"{r['trainable']:,} |")
        r = next(iter(c.values()))
        lines += ["", f"Forward: one {r['points']:,}-point cloud, {r['threads']} thread(s), median of interleaved "
                      f"repeats; training: batch {r['batch']} of {r['train_points']} points."]
        return "\n".join(lines)
    return render


def costs_pointnext(root):
    """Training clouds/s of Any2Point with each tokenizer and of PointNeXt-S, side by side (method-cost)."""
    if not (Path(root) / RESULTS / "costs_pointnext.json").exists():
        return "Not measured yet (`python -m benchmarks method-cost --versus-pointnext --bf16`)."
    rec = _json(root, "costs_pointnext.json")
    precisions = [p for p in ("fp32", "bf16") if p in rec]
    lines = ["| model | points | batch | trainable | " + " | ".join(f"train clouds/s ({p})" for p in precisions) + " |",
             "|---|---|---|---|" + "---|" * len(precisions)]
    for name, r in rec["fp32"].items():
        lines.append(f"| {name} | {r['points']:,} | {r['batch']} | {r['trainable']:,} | "
                     + " | ".join(f"{rec[p][name]['clouds_per_s']:.1f}" for p in precisions) + " |")
    lines += ["", f"One optimiser step of each model in turn, median of {rec['repeats']} interleaved repeats, "
                  f"{rec['threads']} thread(s) of {rec['cpus']} cores, 1-min load average {rec['loadavg_1m']:.2f} at "
                  f"the start; {rec['date']}."]
    return "\n".join(lines)


def serving_latency(root):
    from benchmarks.serving_latency import report
    rec = _json(root, "serving_latency.json")
    lines = report(rec).strip().split("\n")[2:]  # without the title, which names the checkout's folder
    lines[0] += f"; {rec['date']}"
    return "\n".join(lines)


def load_time(root):
    rec = _json(root, "load_time.json")
    lines = [f"{rec['cpus']} cores, 1-min load average {rec['loadavg_1m']:.2f} at the start; converted-weights cache "
             f"{'empty' if rec['fresh_cache'] else 'warm'}; {rec['date']}.", "",
             "| entry | imports s | cold load s | first predict s | cold load + predict s | warm load + predict s |",
             "|---|---|---|---|---|---|"]
    for name, r in rec["results"].items():
        lines.append(f"| `{name}` | {r['imports']:.2f} | {r['load']:.2f} | {r['first_predict']:.2f} | "
                     f"{r['load'] + r['first_predict']:.2f} | {r['warm']:.3f} |")
    return "\n".join(lines)


def versus_pointnext(benchmark, campaigns, folds_only=False, points=None):
    """Each method's full-data runs in `campaigns` against PointNeXt-S's (campaign pointnext), paired; points: only
    the runs on that many points, against PointNeXt-S's diagnostic run on as many (ablation points-<n>)."""
    def render(root):
        from benchmarks.compare_runs import recipe_label
        from benchmarks.low_data import curves, table
        records = [recipe_label(r) for c in (*campaigns, "pointnext") for r in _records(root, c)
                   if (not folds_only or r.fold is not None)
                   and (points is None or (r.run_config or {}).get("points") == points)]
        rows = curves(records, benchmark, ks=[None], reference=points and f"points-{points}")
        return table(rows, versus=f"PointNeXt-S on {points} points" if points else "PointNeXt-S") if rows else \
            "No finished runs yet."
    return render


def low_data(benchmark):
    """The low-data curve's table: PointNeXt-S, Any2Point and baselines (campaign pointnext, low-data), NCM."""
    def render(root):
        from benchmarks.low_data import curves, table
        rows = curves(_low_data_records(root), benchmark)
        return table(rows) if rows else "No finished runs yet."
    return render


def low_data_val(benchmark, k):
    """The low-data recipe choice on val: every trained run at k shots, per draw."""
    def render(root):
        from benchmarks.low_data import val_choice
        return val_choice(_low_data_records(root), benchmark, k)
    return render


def _low_data_records(root):
    """The records the low-data tables read: PointNeXt-S's campaign and the low-data one."""
    return [r for c in ("pointnext", "low-data") for r in _records(root, c)]


def recipe_choice(campaigns, folds=True, base=None, only=None):
    """The CPU recipe candidates, each against the shipped recipe's runs (or `base`'s, an ablation key: the
    candidates `only` built on it): on the cross-validation folds (SweetHome3D) or the default split (kicad33)."""
    def render(root):
        from benchmarks.compare_runs import ablation_table, collect
        records = [r for c in campaigns for r in _records(root, c) if (r.fold is not None) == folds]
        return ablation_table(collect(records, folds), records, folds=folds, base=base, only=only)
    return render


def gpu_records(root):
    """The GPU check's memory table, one row per recipe of each GPU record in benchmarks/results/gpu/."""
    lines = ["| record | recipe | device | torch | device_used_peak_mb | peak_mb (allocated) | step s | clouds/s | "
             "goal met |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((Path(root) / RESULTS / "gpu").glob("*.json")):
        rec = json.loads(path.read_text())
        met = (rec.get("memory_goal") or {}).get("met") or {}
        head = f"| {path.name} | {{}} | {rec['device']['name']} | {rec['device']['torch']} |"
        for name, r in rec["recipes"].items():
            if not r.get("ok"):  # the error is the run's last output lines joined by " | ": its last line says it
                error = r.get("error", "?").split(" | ")[-1].strip().replace("|", "\\|")
                lines.append(head.format(name) + f" failed: {error} | | | | |")
                continue
            lines.append(head.format(name) + f" {r['device_used_peak_mb']} | {r['peak_mb']:.0f} | "
                         f"{r['step_s']:.3f} | {r['clouds_per_s']:.1f} | {met.get(name)} |")
    return "\n".join(lines) if len(lines) > 2 else "No GPU record yet: no task so far was lent a device."


@dataclasses.dataclass
class Block:
    """A generated block of a text file."""
    path: str
    name: str
    render: Callable

    def current(self, root):
        return read_block((Path(root) / self.path).read_text(), self.name)

    def write(self, root, md):
        update_block(Path(root) / self.path, self.name, md)


@dataclasses.dataclass
class CardBlock:
    """The "Compared with baselines" section of a shipped entry's model card, from run records."""
    entry: str
    campaigns: tuple  # the campaigns holding its runs and baselines; PointNeXt-S's campaign is always read
    folds_only: bool = False

    @property
    def path(self):
        return f"zoo/checkpoints/{self.entry}/README.md"

    name = "comparison"

    def folder(self, root):
        return Path(root) / "zoo" / "checkpoints" / self.entry

    def records(self, root):
        return [r for c in (*self.campaigns, "pointnext") for r in _records(root, c)]

    def render(self, root):
        from benchmarks.compare_runs import card_comparison
        records = self.records(root)
        # the last campaign is where this recipe's runs go: the card names it in the command for a missing baseline
        return "\n".join(card_comparison(self.folder(root), records, self.folds_only, campaign=self.campaigns[-1]))

    def current(self, root):
        from zoo.hub import model_card
        config = json.loads((self.folder(root) / "config.json").read_text())
        card = (self.folder(root) / "README.md").read_text()
        if card != model_card(config):  # the card itself is not what its config renders
            return None
        return "\n".join(config.get("card", {}).get("comparison") or [])

    def write(self, root, md):
        from zoo.hub import rewrite_card
        rewrite_card(self.folder(root), comparison=md.split("\n"))


# the furniture campaigns whose fold runs the full-data tables read (sh3d-pointpn: the recipe files' fold runs)
SH3D_CAMPAIGNS = ("sh3d-e50", "sh3d-recipe", "sh3d-pointpn")

BLOCKS = [
    Block("README.md", "entries", entries),
    Block("docs/RESULTS.md", "kicad33-pointpn-runs",
          runs_table("kicad33-recipe", "kicad33-pointpn", recipe="pointpn-cpu")),
    Block("docs/RESULTS.md", "kicad33-e30-runs", runs_table("kicad33-e30")),
    Block("docs/RESULTS.md", "kicad33-e30-comparison", comparison("kicad33-e30")),
    Block("docs/RESULTS.md", "kicad33-runs", runs_table("kicad33")),
    Block("docs/RESULTS.md", "kicad33-comparison", comparison("kicad33")),
    Block("docs/RESULTS.md", "kicad33-ablations", ablations("kicad33", costs="costs_kicad33.json")),
    Block("docs/RESULTS.md", "adapter-use", adapter_use),
    Block("docs/RESULTS.md", "sh3d-e50-runs", runs_table("sh3d-e50")),
    Block("docs/RESULTS.md", "sh3d-e50-comparison", comparison("sh3d-e50", folds_only=True)),
    Block("docs/RESULTS.md", "sh3d-folds-ablations", ablations("sh3d", folds_only=True)),
    Block("docs/RESULTS.md", "kicad33-vs-pointnext",
          versus_pointnext("kicad33", ["kicad33-e30", "kicad33-recipe", "kicad33-pointpn"])),
    Block("docs/RESULTS.md", "kicad33-vs-pointnext-512",
          versus_pointnext("kicad33", ["kicad33-e30", "kicad33-recipe", "kicad33-pointpn"], points=512)),
    Block("docs/RESULTS.md", "kicad33-recipe-choice", recipe_choice(["kicad33-e30", "kicad33-recipe"], folds=False)),
    Block("docs/RESULTS.md", "sh3d-vs-pointnext",
          versus_pointnext("sh3d", SH3D_CAMPAIGNS, folds_only=True)),
    Block("docs/RESULTS.md", "sh3d-vs-pointnext-512",
          versus_pointnext("sh3d", SH3D_CAMPAIGNS, folds_only=True, points=512)),
    Block("docs/RESULTS.md", "sh3d-entries-comparison",
          entries_comparison("sh3d")),
    Block("docs/RESULTS.md", "sh3d-recipe-choice", recipe_choice(["sh3d-e50", "sh3d-recipe"])),
    Block("docs/RESULTS.md", "kicad33-pointpn-candidates",
          recipe_choice(["kicad33-recipe"], folds=False, base="pointpn-cpu", only=POINTPN_CANDIDATES)),
    Block("docs/RESULTS.md", "kicad33-e60-candidates",
          recipe_choice(["kicad33-recipe"], folds=False, base="pointpn-cpu-1024-t128-e60",
                        only=KICAD33_E60_CANDIDATES)),
    Block("docs/RESULTS.md", "sh3d-pointpn-candidates",
          recipe_choice(["sh3d-recipe"], base="pointpn-cpu", only=POINTPN_CANDIDATES)),
    Block("docs/RESULTS.md", "sh3d-e100-candidates",
          recipe_choice(["sh3d-recipe"], base="pointpn-cpu-e100", only=SH3D_E100_CANDIDATES)),
    Block("docs/RESULTS.md", "sh3d-pointpn-runs", runs_table("sh3d-pointpn")),
    Block("docs/RESULTS.md", "sh3d-e100-runs", runs_table("sh3d-e100")),
    Block("docs/RESULTS.md", "low-data-kicad33", low_data("kicad33")),
    Block("docs/RESULTS.md", "low-data-sh3d", low_data("sh3d")),
    Block("docs/RESULTS.md", "low-data-val-kicad33", low_data_val("kicad33", 10)),
    Block("docs/RESULTS.md", "low-data-val-sh3d", low_data_val("sh3d", 10)),
    Block("docs/RESULTS.md", "low-data-val-kicad33-k5", low_data_val("kicad33", 5)),
    Block("docs/RESULTS.md", "low-data-val-sh3d-k5", low_data_val("sh3d", 5)),
    Block("docs/RESULTS.md", "up-axis", up_axis("up_axis.json")),
    Block("benchmarks/results/gpu/README.md", "gpu-memory", gpu_records),
    Block("docs/RESULTS.md", "up-axis-val", up_axis("up_axis_val.json")),
    Block("docs/RESULTS.md", "up-axis-kicad33", up_axis("up_axis_kicad33.json")),
    Block("docs/RESULTS.md", "busy-cpu", busy_cpu),
    Block("docs/RESULTS.md", "costs-kicad33", costs("costs_kicad33.json")),
    Block("docs/RESULTS.md", "load-time", load_time),
    Block("docs/RESULTS.md", "costs-pointnext", costs_pointnext),
    Block("docs/RESULTS.md", "serving-latency", serving_latency),
    CardBlock("any2point-audio-whisper-kicad33", ("kicad33-e30", "kicad33-recipe", "kicad33-pointpn")),
    CardBlock("any2point-language-minilm-kicad33", ("kicad33-e30", "kicad33-pointpn")),
    CardBlock("any2point-vision-dinov2s-kicad33", ("kicad33", "kicad33-pointpn")),
    CardBlock("any2point-audio-whisper-sh3d", ("sh3d-e50", "sh3d-recipe", "sh3d-pointpn"), folds_only=True),
    CardBlock("any2point-language-minilm-sh3d", ("sh3d-e50", "sh3d-pointpn"), folds_only=True),
    CardBlock("any2point-vision-dinov2s-sh3d", ("sh3d-e50", "sh3d-pointpn", "sh3d-e100"), folds_only=True),
]


def stale(root=ROOT, only=None):
    """-> [(block, fresh markdown)] of the blocks whose file does not hold what the records render."""
    out = []
    for b in BLOCKS:
        if only and b.name not in only and b.path not in only:
            continue
        md = b.render(root)
        if b.current(root) != md:
            out.append((b, md))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale block")
    p.add_argument("--root", default=str(ROOT), help="the repository to render (default: this one)")
    p.add_argument("--only", nargs="*", help="these block names or files only")
    a = p.parse_args(argv)
    todo = stale(a.root, a.only)
    names = [f"{b.path}: {b.name}" for b, _ in todo]
    if a.check:
        if todo:
            raise SystemExit("stale generated blocks (run `python -m benchmarks render`):\n  " + "\n  ".join(names))
        print(f"all {len(BLOCKS)} generated blocks match the records")
        return
    for b, md in todo:
        if b.current(a.root) is None and isinstance(b, Block):
            raise SystemExit(f"{b.path} has no block {b.name!r}: add <!-- {b.name}:start --> and "
                             f"<!-- {b.name}:end --> where the table belongs")
        b.write(a.root, md)
        print(f"rendered {b.path}: {b.name}")
    if not todo:
        print(f"all {len(BLOCKS)} generated blocks were up to date")


if __name__ == "__main__":
    main()
