"""The shipped entries of a task against the same entries at an earlier git revision, from their recorded metrics
(each entry's config.json: best epoch on val, test once, single pass and voting). Never typed by hand.

    python benchmarks/entries_table.py --task sh3d --before e76a69f [--readme README.md --block sh3d-entries]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_table import update_block  # noqa: E402


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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sh3d")
    p.add_argument("--before", required=True, help="the git revision of the earlier entries")
    p.add_argument("--readme")
    p.add_argument("--block", default="sh3d-entries")
    a = p.parse_args(argv)
    md = table(a.task, a.before)
    print(md)
    if a.readme:
        update_block(a.readme, md, f"<!-- {a.block}:start -->", f"<!-- {a.block}:end -->")


if __name__ == "__main__":
    main()
