"""SweetHome3D furniture benchmark: an offline, permissively licensed 3D classification set built from the Debian
package `sweethome3d-furniture` (five .sh3f zip catalogs of OBJ models).

    python -m train.data.sh3d --out data/sh3d [--points 2048] [--seed 0] [--catalogs DIR | --deb PATH]

Where the catalogs come from: `--catalogs DIR`, else `--deb PATH`, else the installed package, else `apt-get download
sweethome3d-furniture` into $ANY2POINT_CACHE/debs (nothing is installed; train/data/debs.py), whose .sh3f files are
extracted into a temporary folder for the build and removed afterwards.

Writes points.npy (n, P, 3) float32 (centred, unit sphere, y up), labels.npy, classes.json, splits.json,
manifest.csv and, last, build.json (so an interrupted build is never taken as complete).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import posixpath
import re
import sys
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import debs
from . import folds as kfold
from .built import BuiltDataset, require_build, split_table
from .errors import DatasetError
from .folder import stable_hash

BUILDER_VERSION = 2  # bump when the output of the same catalogs and settings would change
PACKAGE = "sweethome3d-furniture"
CATALOGS_IN_DEB = "usr/share/sweethome3d/furniture"
HINT = f"install {PACKAGE} (sudo apt-get install -y {PACKAGE}), or pass --catalogs DIR or --deb PATH"
CATALOG_DIRS = ("/usr/share/sweethome3d/furniture", "/usr/share/sweethome3d", "/usr/local/share/sweethome3d/furniture",
                "~/.eteks/sweethome3d/furniture")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
MIN_MODELS = 15
OUTPUTS = ("points.npy", "labels.npy", "classes.json", "splits.json", "manifest.csv")

# (class, {field: pattern}); all patterns of a rule must match; the first matching rule wins, so the order settles
# overlaps such as "Desk lamp", "Glass door cabinet", "Bedside table", "Sofa 2 seats".
RULES = [
    ("person", {"tags": r"\bhuman\b"}),
    ("vehicle", {"category": r"^vehicles$"}),  # before "chair": "Seat Leon" is a car
    ("lamp", {"name": r"lamp|light|lantern|chandelier"}),
    ("cabinet", {"name": r"cabinet|cupboard|wardrobe|bookcase|shel(f|ves)|dresser|drawers|^chest$|bedside|"
                         r"nightstand|locker|tv stand"}),
    ("sofa", {"name": r"sofa|couch"}),
    ("chair", {"name": r"\b(arm)?chair\b|\bstool\b|\bseat\b|\bpuff\b|ottoman"}),
    ("bed", {"name": r"\bbed\b|\bcrib\b|^futon$"}),
    ("table", {"name": r"\btable\b|\bdesk\b"}),
    ("plant", {"name": r"plant|\btree\b|cactus|orchid|bamboo|yucca|ficus|bonsai|palm|\bpine\b|hedge|bush|flower|"
                       r"tulip|lily|acacia|cypress|maple|beech|poplar|blossom|spathiphyllum"}),
    ("door", {"name": r"\bdoor\b"}),
    ("window", {"name": r"\bwindow\b"}),
    ("kitchen appliance", {"category": r"^kitchen$", "tags": r"\bappliance\b"}),
]
# the benchmark's classes: a full build has them all (a class under min_models would be dropped from a build)
CLASSES = tuple(sorted(c for c, _ in RULES))
# what a model card says of the training data (the per-model licences are in the manifest and the attribution)
DATA_LICENCE = ("CC-BY-3.0, CC0 and public domain (SweetHome3D furniture catalogs, Debian sweethome3d-furniture); "
                "built locally, never redistributed here")
EXCLUDE = r"flashlight|candle|tennis|table fan|pool table|football table|window blind"  # look like no class member


# ---------------------------------------------------------------- catalogs
def parse_properties(text: str) -> dict[str, str]:
    """Parse Java .properties text as java.util.Properties does: comments, line continuations, escapes."""
    out, lines = {}, iter(re.split(r"\r\n|\r|\n", text))
    for line in lines:
        line = line.lstrip(" \t\f")
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2:  # an odd number of trailing backslashes continues the line
            line = line[:-1] + next(lines, "").lstrip(" \t\f")
        i = 0
        while i < len(line) and line[i] not in "=: \t\f":
            i += 2 if line[i] == "\\" else 1
        key, rest = line[:i], line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        out[_unescape(key)] = _unescape(rest)
    return out


def _unescape(s: str) -> str:
    special = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.?)",
                  lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 5 else special.get(m[1], m[1]), s)


def read_catalog(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(catalog-wide keys, one dict per piece of furniture, in catalog order) of a .sh3f file."""
    with zipfile.ZipFile(path) as z:
        raw = z.read("PluginFurnitureCatalog.properties")
    try:  # Java 9+ resource bundles read UTF-8 and fall back to ISO-8859-1, as some catalogs need
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    head, items = {}, {}
    for key, value in parse_properties(text).items():
        name, sep, n = key.rpartition("#")
        if sep and n.isdigit():
            items.setdefault(int(n), {})[name] = value
        else:
            head[key] = value
    return head, [items[n] | {"index": str(n)} for n in sorted(items) if "model" in items[n]]


def find_catalogs(where=None) -> list[Path]:
    dirs = [Path(where)] if where else [Path(d).expanduser() for d in CATALOG_DIRS]
    for d in dirs:
        found = sorted(d.glob("*.sh3f"))
        if found:
            return found
    where = where or ", ".join(CATALOG_DIRS)
    raise DatasetError(f"No .sh3f catalogs in {where}; install them with: sudo apt-get install -y {PACKAGE}")


@contextlib.contextmanager
def catalogs_from(where=None, deb=None):
    """(catalog paths, package version) for the block: `where`, else the .deb `deb`, else the installed package,
    else the .deb downloaded with `apt-get download` (its catalogs extracted to a temporary folder, removed after)."""
    if where is not None:
        yield find_catalogs(where), debs.installed_version(PACKAGE)
        return
    if deb is None:
        try:
            installed = find_catalogs()
        except DatasetError:  # not installed: the .deb (a build error inside the block is not caught here)
            deb = debs.download(PACKAGE, HINT)
        else:
            yield installed, debs.installed_version(PACKAGE)
            return
    deb = Path(deb)
    version = debs.deb_info(deb, PACKAGE, HINT)["version"]
    with debs.extracted(deb, [f"./{CATALOGS_IN_DEB}/*.sh3f"], prefix="sh3d-") as tmp:
        found = sorted((tmp / CATALOGS_IN_DEB).glob("*.sh3f"))
        if not found:
            raise DatasetError(f"no .sh3f catalogs in {deb}")
        yield found, version


def classify(item: dict[str, str]) -> str | None:
    if re.search(EXCLUDE, item.get("name", ""), re.I):
        return None
    for cls, patterns in RULES:
        if all(re.search(p, item.get(field, ""), re.I) for field, p in patterns.items()):
            return cls
    return None


def _model_licence(z: zipfile.ZipFile, folder: str) -> tuple[str | None, str]:
    """Per-model licence and source URL from a Blend Swap licence file next to the model, if there is one."""
    for n in z.namelist():
        if n.startswith(folder) and n.lower().endswith("license.txt"):
            text = z.read(n).decode("utf-8", errors="replace")
            lic = re.search(r"Released under\s*\n\s*(.+)", text)
            src = re.search(r"Downloaded from\s+(\S+)", text)
            return (lic[1].strip() if lic else None), (src[1] if src else "")
    return None, ""


# ---------------------------------------------------------------- geometry
def sample_model(z: zipfile.ZipFile, item: dict[str, str], points: int, seed: int) -> np.ndarray:
    """`points` area-weighted surface samples of an item's OBJ (with its MTL/textures), y up, in the unit sphere."""
    import trimesh

    model = item["model"].lstrip("/")
    folder = posixpath.dirname(model) + "/"
    files = {n[len(folder):]: z.read(n) for n in z.namelist() if n.startswith(folder) and not n.endswith("/")}
    scene = trimesh.load_scene(io.BytesIO(z.read(model)), file_type=posixpath.splitext(model)[1][1:].lower(),
                               resolver=trimesh.resolvers.ZipResolver(files))
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0] if meshes else None
    if mesh is None or not mesh.area > 0:
        raise ValueError("no surface (no faces with area)")
    pts, _ = trimesh.sample.sample_surface(mesh, points, seed=seed)
    if "modelRotation" in item:  # the catalog's fix-up that makes the model y-up, as Sweet Home 3D applies it
        pts = pts @ np.array(item["modelRotation"].split(), dtype=np.float64).reshape(3, 3).T
    pts = pts - pts.mean(axis=0)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float32)


def group_of(row: dict) -> str:
    """The upstream model of a manifest row: the source URL that variants of one model share, else the model id.
    Splits and folds keep a group whole (within its class); it is also the unit of the paired bootstrap."""
    return row["source"] or row["model_id"]


def assign_splits(rows: list[dict], fractions=SPLIT_FRACTIONS) -> list[str]:
    """train/val/test per row. Within each class, groups ranked by a hash of their key (the model id, or the
    upstream source URL that several catalog entries share) fill train, then val, then test in proportion: every
    class gets its share even when small, and variants of one upstream model never straddle two splits."""
    out = [""] * len(rows)
    for cls in {r["class"] for r in rows}:
        groups = defaultdict(list)
        for i, r in enumerate(rows):
            if r["class"] == cls:
                groups[group_of(r)].append(i)
        n = sum(map(len, groups.values()))
        end_train, end_val = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
        taken = 0
        for key in sorted(groups, key=stable_hash):
            split = "train" if taken < end_train else "val" if taken < end_val else "test"
            for i in groups[key]:
                out[i] = split
            taken += len(groups[key])
    return out


# ---------------------------------------------------------------- build
def build(out, points: int = 2048, seed: int = 0, catalogs=None, force: bool = False, min_models: int = MIN_MODELS,
          log=print, deb=None) -> dict:
    """Build the benchmark into `out` (no-op when it already holds a complete build with the same settings)."""
    with catalogs_from(catalogs, deb) as (paths, version):
        return _build(Path(out), points, seed, paths, version, force, min_models, log)


def _build(out, points, seed, paths, package_version, force, min_models, log) -> dict:
    from tqdm import tqdm

    t0 = time.time()
    parsed = [(p, *read_catalog(p)) for p in paths]
    settings = {
        "builder_version": BUILDER_VERSION, "points": points, "seed": seed, "package": PACKAGE,
        "package_version": package_version, "split": dict(zip(("train", "val", "test"), SPLIT_FRACTIONS)),
        "min_models": min_models,
        "catalogs": {p.name: {"version": head.get("version"), "bytes": p.stat().st_size} for p, head, _ in parsed},
    }
    done = out / "build.json"
    if not force and done.is_file() and all((out / f).is_file() for f in OUTPUTS):
        if json.loads(done.read_text(encoding="utf-8")).get("settings") == settings:
            log(f"{out} already holds this build ({points} points, seed {seed}); nothing to do.")
            return json.loads(done.read_text(encoding="utf-8"))

    todo, unmatched = [], 0
    for path, head, items in parsed:
        for item in items:
            cls = classify(item)
            if cls is None:
                unmatched += 1
            else:
                todo.append((path, head, item, cls))
    rows, clouds, failed = [], [], []
    zips = {p: zipfile.ZipFile(p) for p in paths}
    try:
        for path, head, item, cls in tqdm(todo, desc="sampling models", unit="model", file=sys.stderr):
            z, mid = zips[path], item.get("id") or f"{path.stem}#{item['index']}"
            try:
                clouds.append(sample_model(z, item, points, stable_hash(f"{seed}:{mid}") % 2**32))
            except Exception as e:  # any model trimesh cannot read is skipped and reported, never fatal
                failed.append((mid, " ".join(f"{type(e).__name__}: {e}".split())[:120]))
                continue
            lic, source = _model_licence(z, posixpath.dirname(item["model"].lstrip("/")) + "/")
            rows.append({"model_id": mid, "catalog": path.name, "name": item.get("name", ""),
                         "category": item.get("category", ""), "creator": item.get("creator", ""),
                         "licence": item.get("license") or lic or head.get("license", ""), "source": source,
                         "class": cls})
    finally:
        for z in zips.values():
            z.close()

    counts = Counter(r["class"] for r in rows)
    classes = sorted(c for c, k in counts.items() if k >= min_models)
    dropped = {c: k for c, k in counts.items() if k < min_models}
    keep = [i for i, r in enumerate(rows) if r["class"] in classes]
    rows = [rows[i] for i in keep]
    if not rows:
        raise DatasetError(f"No class reached {min_models} loadable models in {[p.name for p in paths]}; "
                           "check the catalogs.")
    for r, split in zip(rows, assign_splits(rows)):
        r["split"] = split
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    np.save(out / "points.npy", np.stack([clouds[i] for i in keep]))
    np.save(out / "labels.npy", np.array([classes.index(r["class"]) for r in rows], dtype=np.int64))
    (out / "classes.json").write_text(json.dumps(classes, indent=1))
    splits = {s: [i for i, r in enumerate(rows) if r["split"] == s] for s in ("train", "val", "test")}
    (out / "splits.json").write_text(json.dumps(splits))
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["index", *rows[0]])
        writer.writeheader()
        writer.writerows({"index": i, **r} for i, r in enumerate(rows))
    table = {c: {s: sum(r["class"] == c and r["split"] == s for r in rows) for s in splits} for c in classes}
    report = {"settings": settings, "models": len(rows), "classes": classes, "table": table,
              "unmatched": unmatched, "dropped_classes": dropped, "failed": failed,
              "licences": dict(Counter(r["licence"] for r in rows)), "seconds": round(time.time() - t0, 1)}
    done.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    log(format_report(report))
    return report


def format_report(r: dict) -> str:
    lines = split_table(r["table"], r["models"])
    lines.append(f"skipped: {r['unmatched']} matched no class, {len(r['failed'])} failed to load, "
                 f"{sum(r['dropped_classes'].values())} in classes under {r['settings']['min_models']} models "
                 f"{r['dropped_classes']}")
    lines += [f"  failed {mid}: {why}" for mid, why in r["failed"]]
    lines.append(f"built in {r['seconds']} s")
    return "\n".join(lines)


# ---------------------------------------------------------------- dataset
class SH3D(BuiltDataset):
    """Items are (points float32 (num_points, 3), label int) from a build; split in train/val/test or None (all).

    fold=None: the build's split (70/15/15). fold=k (0..4): 5-fold cross-validation, folds of whole upstream models
    stratified by class and computed from the manifest (no rebuild): test = fold k, val = fold (k + 1) % 5, train =
    the other three (train/data/folds.py). `groups` is each item's upstream model (`group_of`), for the bootstrap."""

    def __init__(self, root, split: str | None = "train", num_points: int | None = None, fold: int | None = None):
        root = require_build(root, OUTPUTS, ("SweetHome3D", "train.data.sh3d"))
        with open(root / "manifest.csv", encoding="utf-8") as f:
            manifest = list(csv.DictReader(f))
        index = kfold.select(split, [r["split"] for r in manifest], fold=fold,
                             folds=None if fold is None else fold_of(manifest))
        super().__init__(root, index, labels=json.loads((root / "classes.json").read_text()), rows=manifest,
                         group_of=group_of, num_points=num_points, split=split, fold=fold)


def fold_of(rows: list[dict]) -> list[int]:
    """Cross-validation fold per manifest row: whole upstream models, stratified by class, independent of the
    sampling seed (like the splits, they depend on model ids and sources only)."""
    return kfold.assign_folds([r["class"] for r in rows], [group_of(r) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m train.data.sh3d")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--points", type=int, default=2048, help="surface points per model")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (splits depend on model ids only)")
    ap.add_argument("--catalogs", help=f"folder of .sh3f files (default: where {PACKAGE} installs them, else its "
                    "downloaded .deb)")
    ap.add_argument("--deb", help=f"a {PACKAGE} .deb to read the catalogs from (nothing is installed)")
    ap.add_argument("--min-models", type=int, default=MIN_MODELS, help="drop classes with fewer models")
    ap.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    args = ap.parse_args(argv)
    try:
        build(args.out, args.points, args.seed, args.catalogs, args.force, args.min_models, deb=args.deb)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
