"""Load test of the app's `/predict` endpoint: N concurrent gradio_client requests, each uploading a 2,048-point cloud.

    python app.py &  python benchmarks/app_load.py                     # against a running app (loopback)
    python benchmarks/app_load.py --launch --requests 20 --concurrency 20   # start app.demo in-process first

Bounded in count (--requests), parallelism (--concurrency, one thread per in-flight request) and time (--timeout
seconds for the whole test; a request still running then counts as an error). Prints p50 / p95 / max latency,
throughput and the error count as markdown (also to --out when given); exits 1 if any request failed.
"""
import argparse
import concurrent.futures as cf
import datetime
import importlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # loopback only: nothing leaves the machine


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(target):
    """'module:attr' (a gr.Blocks) -> (url, blocks), served in this process on a free loopback port."""
    module, _, attr = target.partition(":")
    demo = getattr(importlib.import_module(module), attr or "demo")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                share=False, ssr_mode=False)
    return f"http://127.0.0.1:{port}/", demo


def write_clouds(folder, n, points, seed=0):
    """n distinct random clouds (a unit sphere surface, jittered) as .ply files written by the app's own writer."""
    from zoo.files import write_points
    g = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = g.normal(size=(points, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        p *= g.uniform(0.5, 2.0, size=3)  # an ellipsoid, different per request
        paths.append(str(write_points(Path(folder) / f"cloud{i:03d}.ply", p.astype(np.float32))))
    return paths


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(url, files, *, concurrency, timeout, api_name="/predict"):
    """-> dict(latencies=[s], errors=[str], wall=s). One shared Client; `concurrency` threads each submit one
    request at a time and wait for its result, until every file was sent or the deadline passed."""
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False, max_workers=max(1, concurrency), download_files=False,
                    analytics_enabled=False)
    endpoints = client.view_api(print_info=False, return_format="dict").get("named_endpoints", {})
    if api_name not in endpoints:
        raise SystemExit(f"error: {url} has no {api_name} endpoint (it has: {', '.join(endpoints) or 'none'})")
    start = time.perf_counter()
    deadline = start + timeout
    latencies, errors, lock = [], [], threading.Lock()

    def one(path):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("not started before the --timeout deadline")
        t = time.perf_counter()
        job = client.submit(handle_file(path), api_name=api_name)
        try:
            job.result(timeout=left)
        except cf.TimeoutError:
            job.cancel()
            raise TimeoutError(f"no result within the {timeout:g} s deadline") from None
        return time.perf_counter() - t

    with cf.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(one, f) for f in files]
        for fut in cf.as_completed(futures):
            try:
                lat = fut.result()
                with lock:
                    latencies.append(lat)
            except Exception as err:  # every failure is counted and reported, never raised
                first = (str(err).strip().splitlines() or [""])[0]
                with lock:
                    errors.append(f"{type(err).__name__}: {first}"[:200])
    wall = time.perf_counter() - start
    try:
        client.close()
    except Exception:
        pass
    return dict(latencies=latencies, errors=errors, wall=wall)


def report(res, a, url):
    lat, errs = res["latencies"], res["errors"]
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [f"# App load test ({a.api_name})", "",
             f"{url} | {a.requests} requests of {a.points:,} points, {a.concurrency} concurrent, "
             f"{a.timeout:g} s limit | {os.cpu_count()} CPU cores | {date}", "",
             "| requests | ok | errors | p50 latency s | p95 latency s | max latency s | wall s | throughput req/s |",
             "|---|---|---|---|---|---|---|---|",
             f"| {a.requests} | {len(lat)} | {len(errs)} | {percentile(lat, 50):.2f} | {percentile(lat, 95):.2f} | "
             f"{max(lat) if lat else float('nan'):.2f} | {res['wall']:.2f} | {len(lat) / res['wall']:.2f} |"]
    if errs:
        counts = {}
        for e in errs:
            counts[e] = counts.get(e, 0) + 1
        lines += ["", "Errors:", ""] + [f"- {n} x {e}" for e, n in sorted(counts.items(), key=lambda x: -x[1])]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (default %(default)s)")
    p.add_argument("--launch", action="store_true", help="start the app in this process on a free loopback port")
    p.add_argument("--app", default="app:demo", help="what --launch serves, module:attribute (default %(default)s)")
    p.add_argument("--requests", type=int, default=20, help="number of requests (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=20, help="requests in flight at once (default %(default)s)")
    p.add_argument("--timeout", type=float, default=300, help="seconds for the whole test (default %(default)s)")
    p.add_argument("--points", type=int, default=2048, help="points per uploaded cloud (default %(default)s)")
    p.add_argument("--api-name", default="/predict")
    p.add_argument("--out", help="also write the markdown here")
    a = p.parse_args(argv)
    if a.requests < 1 or a.concurrency < 1 or a.timeout <= 0 or a.points < 2:
        p.error("--requests and --concurrency must be >= 1, --timeout > 0, --points >= 2")
    return a


def main(argv=None):
    a = parse_args(argv)
    demo, url = None, a.url
    if a.launch:
        url, demo = launch(a.app)
    try:
        with tempfile.TemporaryDirectory(prefix="app_load_") as tmp:
            files = write_clouds(tmp, a.requests, a.points)
            res = run_load(url, files, concurrency=a.concurrency, timeout=a.timeout, api_name=a.api_name)
    finally:
        if demo is not None:
            demo.close()
    md = report(res, a, url)
    print(md)
    if a.out:
        Path(a.out).write_text(md)
    if res["errors"]:
        raise SystemExit(1)
    return res


if __name__ == "__main__":
    main()
