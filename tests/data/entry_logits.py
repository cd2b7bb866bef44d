"""Rewrite tests/data/entry_logits.json: the shipped entries' logits on the example clouds, one thread.

    python -m tests.data.entry_logits [NAME ...]      # from the repository root; default: every trained entry

Run it only when an entry is retrained (a new model, so new reference logits), never to make a failing
test_committed_entries_keep_their_logits pass: that test exists to catch code changes that move shipped models.
"""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "entry_logits.json"


def main(names):
    from app import TASK_EXAMPLES  # each task's example folder
    from zoo import load_model, read_points
    from zoo.registry import get_entry
    torch.set_num_threads(1)
    ref = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        m = load_model(name)
        folder = ROOT / TASK_EXAMPLES[get_entry(name).dataset]
        ref[name] = {}
        for path in sorted(folder.glob("*.ply")):
            pts = torch.as_tensor(read_points(path, num_points=2048))[None]
            with torch.no_grad():
                ref[name][str(path.relative_to(ROOT / "examples"))] = [round(v, 7) for v in m(pts)[0].tolist()]
        print(f"{name}: {len(ref[name])} examples")
    OUT.write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or [p.name for p in sorted((ROOT / "zoo" / "checkpoints").iterdir())])
