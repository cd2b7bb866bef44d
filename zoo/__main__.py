"""The zoo from a shell.

    python -m zoo list [--modality M] [--json]          every entry: trained, recipe (and how to train it), or why not
    python -m zoo info NAME                             one entry in full
    python -m zoo predict PATH... [--model NAME ...] [--up y|z|auto] [--top-k K] [--format table|json|csv]
    python -m zoo export NAME --onnx out.onnx           the whole model as ONNX, checked against torch
"""
import argparse
import csv
import glob
import json
import sys
import warnings
from pathlib import Path

from zoo.registry import DEFAULTS, entry_labels, get_entry, list_models, status

PROGRESS_MIN = 10  # files from which predict shows a progress bar (on stderr)
CHUNK = 16  # files read and predicted together: one batched forward per model and chunk
PREDICT_HELP = """\
Classify point-cloud and mesh files with zoo entries.

PATH is a file, a folder (searched recursively for the supported extensions) or a glob ("scans/**/*.ply"; quote it
to let this command expand it). Without --model, the default entry of each modality classifies every file. A file
that cannot be read becomes an error row and the rest goes on; the exit status is 1 when any file failed.

--up says how the files are oriented: y (y up, the zoo's convention, the default), z (z up: CAD, scanners), or
auto (each model scores both and keeps the orientation it is most confident about).

examples:
  python -m zoo predict chair.ply scans/ --format json
  python -m zoo predict "cad/**/*.stl" --up z --model any2point-audio-whisper-sh3d --top-k 3
"""


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m zoo",
                                description="List, inspect, run and export Any2Point zoo entries.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every entry: trained, a recipe (and its training command), or unavailable")
    ls.add_argument("--modality", choices=["vision", "language", "audio"])
    ls.add_argument("--json", action="store_true")
    info = sub.add_parser("info", help="one entry in full")
    info.add_argument("name")
    pr = sub.add_parser("predict", help="classify point-cloud / mesh files", description=PREDICT_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (recursive) or globs")
    pr.add_argument("--model", action="extend", nargs="+", metavar="NAME",
                    help="zoo entries or entry folders (default: one per modality: " + ", ".join(DEFAULTS.values())
                    + ")")
    pr.add_argument("--up", default=None, choices=["y", "z", "auto"],
                    help="the files' up axis (default: each entry's own, y)")
    pr.add_argument("--top-k", type=int, default=5, metavar="K", help="labels per file and model (default 5; 0: all)")
    pr.add_argument("--format", choices=["table", "json", "csv"], default="table")
    pr.add_argument("--no-progress", action="store_true", help=f"no progress bar (shown from {PROGRESS_MIN} files)")
    ex = sub.add_parser("export", help="export an entry as ONNX and check it with onnxruntime",
                        description="Export the whole model (normalisation, FPS + kNN tokenizer, projection, adapted "
                        "backbone, head) as ONNX: input `points` float32 (B, N, 3) with dynamic B and N "
                        "(N >= the entry's num_tokens), output `logits` (B, K). Labels, up axis, num_points and the "
                        "input contract go into the file's metadata: a cloud above num_points is subsampled before "
                        "the graph, as core.points.canonical_sample does (sort the rows by x, y, z; farthest point "
                        "sampling from the point farthest from the centroid), so logits do not depend on the order "
                        "of the points. onnxruntime's logits are checked against torch's.")
    ex.add_argument("name", help="zoo entry or entry folder")
    ex.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    ex.add_argument("--atol", type=float, default=1e-4, help="largest accepted |onnxruntime - torch| logit")
    a = p.parse_args(argv)
    if a.cmd == "list":
        return cmd_list(a)
    if a.cmd == "info":
        return cmd_info(a)
    if a.cmd == "predict":
        return cmd_predict(a)
    return cmd_export(a)


# --- list / info -------------------------------------------------------------------------------------------------
def cmd_list(a):
    rows = list_models(a.modality)
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':42} {'modality':9} {'state':11} backbone / reason")
    for r in rows:
        state = "recipe" if r["recipe"] else "trained" if r["available"] else "unavailable"
        mark = "*" if r["default"] else " "
        print(f"{r['name']:41}{mark} {r['modality']:9} {state:11} {r['backbone']}")
        if r["recipe"]:
            print(f"{'':64}train it with: {r['train_command']}")
        if not r["available"]:
            print(f"{'':64}{r['reason']}")
    print("\n* default for its modality; a recipe is not a classifier until it is trained")
    return 0


def cmd_info(a):
    try:
        e = get_entry(a.name)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    available, trained, reason = status(e)
    out = dict(vars(e), model=e.model.to_dict(), labels=list(entry_labels(e)), available=available, trained=trained,
               reason=reason)
    from zoo.registry import _local_artifact
    folder = _local_artifact(e)
    if folder:
        out["artifact_config"] = json.loads((folder / "config.json").read_text())
    print(json.dumps(out, indent=2, default=str))
    return 0


def load(name):
    """A model by entry name or folder, or None after a one-line reason on stderr."""
    from zoo.hub import EntryError
    from zoo.registry import ModelUnavailable, load_model
    try:
        return load_model(name)
    except (ModelUnavailable, KeyError, EntryError, OSError, ValueError) as err:
        print(f"cannot load {name}: {err.args[0] if err.args else err}", file=sys.stderr)
        return None


# --- predict -----------------------------------------------------------------------------------------------------
def expand(paths):
    """PATH arguments -> [(path or None, error or None)] in order: files as given, folders recursively (sorted),
    globs expanded (sorted); an argument that names nothing is an error row of its own."""
    from zoo.files import SUPPORTED_EXTENSIONS
    out = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
            out += [(f, None) for f in found] or [(path, f"no {'/'.join(SUPPORTED_EXTENSIONS)} files in the folder")]
        elif path.exists() or not glob.has_magic(arg):
            out.append((path, None))  # a missing file: read_points says so, as an error row
        else:
            found = sorted(Path(f) for f in glob.glob(arg, recursive=True) if Path(f).is_file())
            out += [(f, None) for f in found] or [(path, "no file matches this pattern")]
    seen = set()  # a file named twice (a folder and a glob over it) is classified once
    return [(f, err) for f, err in out if err or not (f.resolve() in seen or seen.add(f.resolve()))]


def read(path):
    """(points, None) or (None, one-line reason)."""
    from zoo.files import PointCloudError, read_points
    try:
        return read_points(path, num_points=2048), None
    except PointCloudError as err:
        return None, str(err)


def classify(model, clouds, up, top_k):
    """[(probs, up used)] for clouds; one batched forward, or one cloud at a time if the batch fails, so a cloud
    the model rejects becomes an error of its own."""
    try:
        return model.predict_batch(clouds, up=up, top_k=top_k, with_up=True)
    except (ValueError, RuntimeError):
        out = []
        for c in clouds:
            try:
                out.append(model.predict_batch([c], up=up, top_k=top_k, with_up=True)[0])
            except (ValueError, RuntimeError) as err:
                out.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return out


def cmd_predict(a):
    names = a.model or list(DEFAULTS.values())
    models = {}
    for name in names:
        model = load(name)
        if model is None:
            return 2
        models[model.info.name if model.info else str(name)] = model
    files = expand(a.paths)
    from tqdm import tqdm
    bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=a.no_progress or len(files) < PROGRESS_MIN)
    rows = []
    for start in range(0, len(files), CHUNK):
        chunk = [(path, *((None, err) if err else read(path))) for path, err in files[start:start + CHUNK]]
        good = [(path, pts) for path, pts, err in chunk if err is None]
        results = {name: classify(m, [pts for _, pts in good], a.up, a.top_k or None) for name, m in models.items()}
        done = {str(path): i for i, (path, _) in enumerate(good)}
        for path, _, err in chunk:
            if err is not None:
                rows.append(dict(file=str(path), error=err))
                continue
            for name in models:
                res = results[name][done[str(path)]]
                rows.append(dict(file=str(path), model=name, error=res) if isinstance(res, str) else
                            dict(file=str(path), model=name, up=res[1], labels=res[0]))
        bar.update(len(chunk))
    bar.close()
    write_rows(rows, a.format, sys.stdout)
    return 1 if any("error" in r for r in rows) else 0


def write_rows(rows, fmt, out):
    if fmt == "json":
        out.write(json.dumps(rows, indent=2) + "\n")
    elif fmt == "csv":  # long form: one line per (file, model, label); an error is a line with `error` set
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["file", "model", "up", "rank", "label", "probability", "error"])
        for r in rows:
            if "error" in r:
                w.writerow([r["file"], r.get("model", ""), "", "", "", "", r["error"]])
            else:
                for rank, (label, prob) in enumerate(r["labels"].items(), 1):
                    w.writerow([r["file"], r["model"], r["up"], rank, label, f"{prob:.6f}", ""])
    else:
        width = max([len(r["file"]) for r in rows] + [4])
        mwidth = max([len(r.get("model", "")) for r in rows] + [5])
        out.write(f"{'file':{width}}  {'model':{mwidth}}  up  labels\n")
        for r in rows:
            if "error" in r:
                out.write(f"{r['file']:{width}}  {r.get('model', '-'):{mwidth}}  -   error: {r['error']}\n")
            else:
                labels = ", ".join(f"{label} {prob:.2f}" for label, prob in r["labels"].items())
                out.write(f"{r['file']:{width}}  {r['model']:{mwidth}}  {r['up']:3} {labels}\n")


# --- export ------------------------------------------------------------------------------------------------------
def _onnx_symbolics():
    """Symbolics the TorchScript ONNX exporter lacks or gets wrong for this model, as {aten op: function}:
    - unique: ONNX Unique returns flat inverse indices; torch's have the input's shape (the voxel / cell ids);
    - layer_norm: traced with a dynamic batch, normalized_shape arrives as a shape expression, not constants
      (only its length, the number of normalised axes, matters);
    - addcdiv (the guided adapter's pooled mean): no symbolic at all;
    - embedding_bag: the stock one is an ONNX Loop over every bag (every token), slow and a source of
      onnxruntime warnings. The projection calls it with 2D indices, i.e. bags of equal size, which is one Gather
      and a reduction over a reshape; unequal bags would come out wrong, and the check after export would say so."""
    import torch
    from torch.onnx import symbolic_helper as sh

    def unique2(g, x, sorted_, return_inverse, return_counts):
        u, _, inverse, counts = g.op("Unique", x, sorted_i=1, outputs=4)
        return u, g.op("Reshape", inverse, g.op("Shape", x)), counts

    def layer_norm(g, x, shape, weight, bias, eps, cudnn_enable):
        dims = sh._unpack_list(shape) if sh._is_packed_list(shape) else sh._maybe_get_const(shape, "is")
        tail = g.op("Slice", g.op("Shape", x), g.op("Constant", value_t=torch.tensor([-len(dims)])),
                    g.op("Constant", value_t=torch.tensor([2**62])))
        if sh._is_none(weight):
            weight = g.op("ConstantOfShape", tail, value_t=torch.tensor([1.0]))
        if sh._is_none(bias):
            bias = g.op("ConstantOfShape", tail, value_t=torch.tensor([0.0]))
        return g.op("LayerNormalization", x, weight, bias, epsilon_f=sh._get_const(eps, "f", "eps"),
                    axis_i=-len(dims))

    def addcdiv(g, x, t1, t2, value):
        out = g.op("Div", t1, t2)
        if sh._maybe_get_const(value, "f") != 1:
            out = g.op("Mul", out, value)
        return g.op("Add", x, out)

    def embedding_bag(g, weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
                      include_last_offset, padding_idx):
        rows = g.op("Gather", weight, indices, axis_i=0)  # (bags * size, C)
        if not sh._is_none(per_sample_weights):
            rows = g.op("Mul", rows, sh._unsqueeze_helper(g, per_sample_weights, [1]))
        shape = g.op("Concat", g.op("Shape", offsets), g.op("Constant", value_t=torch.tensor([-1])),
                     g.op("Slice", g.op("Shape", weight), g.op("Constant", value_t=torch.tensor([1])),
                          g.op("Constant", value_t=torch.tensor([2]))), axis_i=0)
        rows = g.op("Reshape", rows, shape)  # (bags, size, C)
        mode = sh._maybe_get_const(mode, "i")
        if mode == 0:
            out = sh._reducesum_helper(g, rows, axes_i=[1], keepdims_i=0)
        else:
            out = g.op("ReduceMean" if mode == 1 else "ReduceMax", rows, axes_i=[1], keepdims_i=0)
        return out, None, None, None

    return {"aten::_unique2": unique2, "aten::layer_norm": layer_norm, "aten::addcdiv": addcdiv,
            "aten::embedding_bag": embedding_bag}


OPSET = 17


INPUT_CONTRACT = ("one cloud per batch row, in the model's up axis; a cloud above num_points is first reduced to "
                  "num_points by core.points.canonical_sample (rows sorted by x, then y, then z; farthest point "
                  "sampling from the point farthest from the centroid, ties to the first in that order), which makes "
                  "the logits independent of the order of the points")


def export_onnx(model, path, *, atol=1e-4, seed=0):
    """model -> ONNX file at `path` (input `points` (B, N, 3) float32, dynamic B and N >= num_tokens; output
    `logits` (B, K)), then checked: onnxruntime's logits on seeded clouds of two batch sizes and two sizes must be
    within `atol` of torch's. Returns {"path", "max_abs_diff", "checked"}; ValueError if the check fails."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from zoo.serving import ZooModel
    model = getattr(model, "module", model).eval()  # the nn.Module is what torch exports
    n = model.num_points
    example = torch.as_tensor(np.random.default_rng(seed).normal(size=(2, n, 3)), dtype=torch.float32)
    symbolics = _onnx_symbolics()
    for op, fn in symbolics.items():
        register_custom_op_symbolic(op, fn, OPSET)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on every Python int taken from a shape
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=["points"], output_names=["logits"],
                              dynamic_axes={"points": {0: "batch", 1: "points"}, "logits": {0: "batch"}})
    finally:
        for op in symbolics:
            unregister_custom_op_symbolic(op, OPSET)
    proto = onnx.load(str(path))
    meta = dict(labels=json.dumps(model.labels), up=ZooModel(model).up, num_points=str(n), input_contract=INPUT_CONTRACT,
                name=model.info.name if model.info else "", source="Any2Point zoo (python -m zoo export)")
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))

    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's graph-rewrite notes are not the user's business
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng, worst, checked = np.random.default_rng(seed + 1), 0.0, []
    for b, m in ((1, n), (3, max(model.config.num_tokens, n // 2))):
        pts = rng.normal(size=(b, m, 3)).astype(np.float32) * rng.uniform(0.5, 2.0, size=(1, 1, 3)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(pts)).numpy()
        got = session.run(["logits"], {"points": pts})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
        checked.append([b, m])
    if not worst <= atol:
        raise ValueError(f"onnxruntime's logits differ from torch's by {worst:.2e} (> {atol:g}); not a faithful export")
    return dict(path=str(path), max_abs_diff=worst, checked=checked)


def cmd_export(a):
    model = load(a.name)
    if model is None:
        return 2
    try:
        result = export_onnx(model, a.onnx, atol=a.atol)
    except ValueError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    size = Path(result["path"]).stat().st_size / 2**20
    print(f"wrote {result['path']} ({size:.1f} MiB): points float32 (B, N, 3), N >= {model.config.num_tokens} "
          f"(trained at {model.num_points}), {model.up} up -> logits (B, {len(model.labels)}); onnxruntime matches "
          f"torch within {result['max_abs_diff']:.1e} on (B, N) = {', '.join(map(str, map(tuple, result['checked'])))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
