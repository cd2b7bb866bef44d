"""What an upload costs through the served app, next to the library doing the same work, in one run.

    python -m benchmarks serving-latency                       # serves this checkout's app.py
    python -m benchmarks serving-latency --root /tmp/before    # another checkout (a `git worktree` of an old commit)

Starts `python app.py` of --root on a free loopback port (a real server process: its reader's worker is prepared
the way a deployment's is), waits until it answers, warms it, then on one small .stl mesh measures:
- the median `/predict` latency of one upload (sequential; the sandboxed read included), through gradio_client and
  over plain HTTP as a browser calls it (gradio_client polls its message queue every 50 ms, which quantises its
  latencies in 50 ms steps);
- the library's three default entries' `predict` on the same cloud (read_points of the same file, in a separate
  process of the same checkout, while the server is idle), median of the sum of the three;
- the median `/compare` latency (what the UI's button runs: labels, cards, the 3D view and the views figure);
- `--concurrent` simultaneous `/predict` requests of distinct 2,048-point clouds: errors and requests/s.
Prints a markdown table (also to --out) with the load average before and after, and returns the numbers.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.app_load import free_port, run_load, write_clouds

ROOT = Path(__file__).resolve().parents[1]

# run by the checkout's own interpreter path setup: the library's three-model predict on the cloud of one file
_LIBRARY = """
import json, sys, time
from zoo import load_model, read_points
from zoo.registry import DEFAULTS
points = read_points(sys.argv[1])
models = [load_model(n) for n in DEFAULTS.values()]
for m in models:
    m.predict(points)  # warm
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    for m in models:
        m.predict(points)
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def write_mesh(path):
    """A small capsule mesh as binary .stl (the kind of upload the app gets most)."""
    import trimesh
    trimesh.creation.capsule(height=1.0, radius=0.3, count=[16, 16]).export(path)
    return path


def start_app(root, port):
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the app exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "config", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("error: the app did not answer within 180 s")


def timed_calls(client, n, *args, api_name):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        client.predict(*args, api_name=api_name)
        times.append(time.perf_counter() - t)
    return times


def http_times(url, path, n, inputs):
    """/predict over plain HTTP as a browser makes it (keep-alive; upload, call, read the event stream to its
    result): the server's own latency, without gradio_client's 50 ms polling of its message queue."""
    import httpx
    times = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for _ in range(n):
            t = time.perf_counter()
            with open(path, "rb") as f:
                uploaded = http.post("gradio_api/upload", files={"files": (Path(path).name, f)}).json()[0]
            data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, *inputs]
            event_id = http.post("gradio_api/call/predict", json={"data": data}).json()["event_id"]
            with http.stream("GET", f"gradio_api/call/predict/{event_id}") as stream:
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event in ("complete", "error"):
                        if event == "error":
                            raise SystemExit(f"error: /predict over HTTP failed: {line[5:].strip()[:200]}")
                        break
            times.append(time.perf_counter() - t)
    return times


def library_times(root, path, repeats):
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _LIBRARY, str(path), str(repeats)], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(root, repeats, concurrent, tmp):
    from gradio_client import Client, handle_file
    mesh = write_mesh(Path(tmp) / "capsule.stl")
    load_before = os.getloadavg()
    proc, url = start_app(root, free_port())
    try:
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        upload = handle_file(str(mesh))
        timed_calls(client, 3, upload, api_name="/predict")  # the first loads the models
        predict = timed_calls(client, repeats, upload, api_name="/predict")
        from zoo.registry import DEFAULTS
        http = http_times(url, mesh, repeats, [*DEFAULTS.values(), "y"])
        library = library_times(root, mesh, repeats)
        timed_calls(client, 1, upload, "any2point-vision-dinov2s-sh3d", "any2point-language-minilm-sh3d",
                    "any2point-audio-whisper-sh3d", "y", api_name="/compare")
        compare = timed_calls(client, max(3, repeats // 3), upload, "any2point-vision-dinov2s-sh3d",
                              "any2point-language-minilm-sh3d", "any2point-audio-whisper-sh3d", "y",
                              api_name="/compare")
        client.close()
        load = run_load(url, write_clouds(tmp, concurrent, 2048), concurrency=concurrent, timeout=600)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return dict(root=str(root), predict_median_s=float(np.median(predict)), http_median_s=float(np.median(http)),
                http_ratio=float(np.median(http) / np.median(library)),
                library_median_s=float(np.median(library)), compare_median_s=float(np.median(compare)),
                ratio=float(np.median(predict) / np.median(library)), concurrent=concurrent,
                concurrent_ok=len(load["latencies"]), concurrent_errors=load["errors"],
                requests_per_s=len(load["latencies"]) / load["wall"], load_before=load_before,
                load_after=os.getloadavg(), cores=os.cpu_count(), repeats=repeats)


def report(r):
    """The record as markdown (also what docs/RESULTS.md renders)."""
    return "\n".join([
        f"# Serving latency ({r['root']})", "",
        f"{r['cores']} cores; load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}; "
        f"medians of {r['repeats']} calls", "",
        "| /predict s (gradio_client) | /predict s (HTTP) | library 3-model predict s | ratio (gradio_client) | "
        "ratio (HTTP) | /compare s | concurrent | errors | requests/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['predict_median_s']:.3f} | {r['http_median_s']:.3f} | {r['library_median_s']:.3f} | {r['ratio']:.2f} | "
        f"{r['http_ratio']:.2f} | "
        f"{r['compare_median_s']:.3f} | {r['concurrent']} | {len(r['concurrent_errors'])} | "
        f"{r['requests_per_s']:.2f} |"]) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(ROOT), help="the checkout whose app.py is served (default: this one)")
    p.add_argument("--repeats", type=int, default=15, help="sequential calls per median (default %(default)s)")
    p.add_argument("--concurrent", type=int, default=20, help="simultaneous requests (default %(default)s)")
    p.add_argument("--out", help="also write the markdown here")
    p.add_argument("--record", default=str(ROOT / "benchmarks" / "results" / "serving_latency.json"),
                   help="the JSON record docs/RESULTS.md renders (default: %(default)s; '' for none)")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.concurrent < 1:
        p.error("--repeats and --concurrent must be >= 1")
    root = Path(a.root).resolve()
    if not (root / "app.py").is_file():
        p.error(f"{root} has no app.py")
    with tempfile.TemporaryDirectory(prefix="serving_latency_") as tmp:
        r = measure(root, a.repeats, a.concurrent, tmp)
    md = report(r)
    print(md)
    print(json.dumps(r))
    if a.out:
        Path(a.out).write_text(md)
    if a.record:
        import datetime
        Path(a.record).write_text(json.dumps({**r, "root": Path(r["root"]).name,
                                              "date": datetime.date.today().isoformat()}, indent=1) + "\n")
    return r


if __name__ == "__main__":
    main()
