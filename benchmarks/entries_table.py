"""The shipped entries with their accuracy, from each entry's config.json (best epoch on val, test once, single pass
and voting), never typed by hand; or a task's entries against the same entries at an earlier git revision.

    python -m benchmarks entries                              # the README's table of shipped entries
    python -m benchmarks entries --task sh3d --before e76a69f
"""
import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shipped_table(root=ROOT):
    """One row per trained entry in zoo/checkpoints/ (registry order): task, backbone, val / test accuracy, size."""
    from zoo.hub import _hub_id
    from zoo.registry import ENTRIES, TASK_DEFAULTS, TASKS
    defaults = {name for task in TASK_DEFAULTS.values() for name in task.values()}
    lines = ["| entry | task | backbone | classes | val | test | test (voting) | test models | epochs | trainable |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in ENTRIES:
        path = Path(root) / "zoo" / "checkpoints" / (e.artifact or "") / "config.json"
        if not e.artifact or not path.is_file():
            continue
        c = json.loads(path.read_text())
        m, t = c["metrics"], c.get("training", {})
        task = TASKS.get(t.get("dataset"), t.get("dataset", "?"))
        backbone = _hub_id(c["backbone"]) or c["backbone"]["spec"]
        lines.append(f"| `{e.name}`{' (default)' * (e.name in defaults)} | {task} | {backbone} | "
                     f"{len(c['labels'])} | {m['val_acc']:.1%} | {m['test_acc']:.1%} | "
                     f"{m['test_acc_vote']:.1%} ({t.get('votes')} votes) | {t.get('sizes', {}).get('test', '?')} | {t.get('epochs')} | "
                     f"{c['adapter']['num_parameters']:,} |")
    return "\n".join(lines)


def entry_config(name, rev=None):
    """An entry's config.json, now (rev None) or at git revision `rev`; None where it did not exist."""
    path = f"zoo/checkpoints/{name}/config.json"
    if rev is None:
        return json.loads((ROOT / path).read_text()) if (ROOT / path).exists() else None
    out = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout) if out.returncode == 0 else None


def row_cells(c):
    if c is None:
        return ["—"] * 4
    m, t = c["metrics"], c.get("training", {})
    recipe = f"{t.get('points')} pts, {c['model'].get('num_tokens')} tokens, {t.get('epochs')} ep"
    if t.get("resample"):
        recipe += f", resampled, adapter dropout {c['model'].get('adapter_dropout', 0)}"
    return [f"{m['val_acc']:.1%}", f"{m['test_acc']:.1%}", f"{m['test_acc_vote']:.1%}", recipe]


def table(task, before):
    from zoo.registry import TASK_DEFAULTS
    lines = ["| entry | val | test | test (voting) | recipe | earlier val | earlier test | earlier test (voting) | "
             "earlier recipe |", "|---|---|---|---|---|---|---|---|---|"]
    for name in TASK_DEFAULTS[task].values():
        lines.append(f"| `{name}` | " + " | ".join(row_cells(entry_config(name)) + row_cells(entry_config(name, before)))
                     + " |")
    test_n = (entry_config(next(iter(TASK_DEFAULTS[task].values()))) or {}).get("training", {}).get("sizes", {})
    lines += ["", f"Default split ({test_n.get('val', '?')} val / {test_n.get('test', '?')} test models; one test model "
              f"is {100 / max(test_n.get('test', 1), 1):.1f} points); earlier = the entries at `{before}`."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks entries", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sh3d")
    p.add_argument("--before", help="a git revision: the task's entries now against their state there")
    a = p.parse_args(argv)
    print(table(a.task, a.before) if a.before else shipped_table())


if __name__ == "__main__":
    main()
