"""kicad33: a 33-class benchmark of electronic-component shapes built from Debian's `kicad-packages3d` (6.0.10), the
KiCad library's VRML2 models (DESIGN §3).

    python -m train.data.kicad --out data/kicad33 [--points 2048] [--seed 0] [--deb PATH | --models DIR]

Where the models come from: `--models DIR` (a `3dmodels` folder of `<Lib>.3dshapes/*.wrl`), else `--deb PATH`, else
the installed package (/usr/share/kicad/3dmodels), else `apt-get download kicad-packages3d` into
$ANY2POINT_CACHE/debs (nothing is installed). From a .deb only the `*.wrl` files and the Debian copyright file are
extracted (`dpkg-deb --fsys-tarfile | tar -x --wildcards`), into a temporary folder removed afterwards.

What the build does:
- reads every model of the libraries that `CLASS_RULES` maps to a class (our own VRML2 reader, `read_vrml`);
- families: library + file name with every number replaced by `#` (`family_of`); geometry-identical files (same
  rounded triangles) keep one copy and merge their families; at most 16 models per family (seeded);
- 2048 area-weighted surface samples per model (seeded by the model's name), centred, in the unit sphere, and
  turned from KiCad's z-up (z out of the board) to the SweetHome3D convention **y-up**: (x, y, z) -> (x, z, -y);
- 5 folds and a default train/val/test split (55/15/30), both by family within each class (train/data/folds.py).

Writes points.npy (n, P, 3) float32, labels.npy, classes.json, manifest.json (one row per model: name, class,
family, fold, split, licence; plus "up": "y" and the source package) and, last, build.json (so an interrupted build
is never taken as complete). Derived from share-alike data: never commit the output.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import json
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import debs
from . import folds as kfold
from .built import BuiltDataset, require_build, split_table
from .errors import DatasetError
from .folder import stable_hash

BUILDER_VERSION = 2  # 2: pitch variants (numbers in library names) are one family. Bump when the output of the same package and settings would change
PACKAGE = "kicad-packages3d"
EXPECTED_VERSION = "6.0.10"  # the version DESIGN §3 counts are for; another one builds, with a note in the log
INSTALLED = Path("/usr/share/kicad/3dmodels")
MODELS_IN_DEB = "usr/share/kicad/3dmodels"
COPYRIGHT_IN_DEB = "usr/share/doc/kicad-packages3d/copyright"
FAMILY_CAP = 16
SPLIT_FRACTIONS = (0.55, 0.15, 0.30)
OUTPUTS = ("points.npy", "labels.npy", "classes.json", "manifest.json")
DEFAULT_LICENCE = "CC-BY-SA-4.0 WITH KiCad-libraries-exception"
# what a model card says of the training data (the per-model licences are in the manifest and the attribution)
DATA_LICENCE = (f"{DEFAULT_LICENCE} (KiCad 3D models, Debian kicad-packages3d; a few GPL-3.0-or-later); "
                "built locally, never redistributed here")
WEIGHTS_LICENSE = "cc-by-sa-4.0"  # adapters trained on share-alike data are shared alike
# predict(up="auto")'s upright-prior weight for entries trained here (core.model): components lie flat on a board,
# so "wide base, standing tall" is evidence against the true up; chosen on val (README, the up axis)
UP_PRIOR = -2.0
LICENCE_NAMES = {"CC-BY-SA-4.0-with-exception": DEFAULT_LICENCE, "GPL-3+": "GPL-3.0-or-later",
                 "GPL-2+": "GPL-2.0-or-later"}  # Debian copyright short names -> SPDX-style names

# class -> library-folder patterns (fnmatch on the folder name without ".3dshapes"), DESIGN §3's table in reading
# order. The one place the class list lives. Small folders named here (Connector_Stocko, Package_SON/LGA: 19 models,
# Oscillator: 8, Potentiometer_SMD: 2) are kept on purpose: they join bigger folders of the same class; DESIGN's
# "< 20 models" exclusion is why small folders have no rule. Varistor (one family) and TestPoint match none.
CLASS_RULES = (
    ("pin_header", ("Connector_PinHeader_*",)),
    ("ic_bga", ("Package_BGA",)),
    ("pin_socket", ("Connector_PinSocket_*",)),
    ("led_tht", ("LED_THT",)),
    ("terminal_block", ("Connector_Phoenix_MC*", "Connector_Phoenix_MSTB", "Connector_Phoenix_GMSTB",
                        "Connector_Phoenix_SPT", "TerminalBlock_*")),
    ("display", ("Display", "Display_7Segment")),
    ("capacitor_tht", ("Capacitor_THT",)),
    ("ic_qfp", ("Package_QFP",)),
    ("ic_qfn_dfn", ("Package_DFN_QFN", "Package_SON", "Package_LGA")),
    ("transistor_smd", ("Package_TO_SOT_SMD",)),
    ("wire_connector", ("Connector_JST", "Connector_Molex", "Connector_Stocko")),
    ("power_module", ("Converter_*",)),
    ("standoff", ("Mounting_Wuerth",)),
    ("led_diode_smd", ("LED_SMD", "Diode_SMD")),
    ("ic_dip", ("Package_DIP",)),
    ("relay", ("Relay_*",)),
    ("ic_so", ("Package_SO",)),
    ("inductor_smd", ("Inductor_SMD",)),
    ("switch", ("Button_Switch_*",)),
    ("optocoupler", ("OptoDevice",)),
    ("inductor_tht", ("Inductor_THT",)),
    ("transformer", ("Transformer_THT",)),
    ("chip_smd", ("Capacitor_SMD", "Resistor_SMD")),
    ("fuse", ("Fuse",)),
    ("dsub", ("Connector_Dsub",)),
    ("battery_holder", ("Battery",)),
    ("crystal", ("Crystal", "Oscillator")),
    ("potentiometer", ("Potentiometer_THT", "Potentiometer_SMD")),
    ("resistor_tht", ("Resistor_THT",)),
    ("tantalum_smd", ("Capacitor_Tantalum_SMD",)),
    ("transistor_tht", ("Package_TO_SOT_THT",)),
    ("ribbon_connector", ("Connector_FFC-FPC", "Connector_IDC")),
    ("diode_tht", ("Diode_THT",)),
)
CLASSES = tuple(sorted(c for c, _ in CLASS_RULES))  # label index = position here (sorted, as classes.json)
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # a rotation: (x, y, z) -> (x, z, -y)


def library_class(library: str) -> str | None:
    """The class of a library folder (name without ".3dshapes"), or None when no rule matches."""
    for cls, patterns in CLASS_RULES:
        if any(fnmatch.fnmatchcase(library, p) for p in patterns):
            return cls
    return None


def family_of(library: str, stem: str) -> str:
    """Library + file name with every number replaced by '#': the parametric variants of one design. Numbers in the
    library name go too, on purpose: pitch variants (Connector_PinHeader_1.00mm / _2.54mm) are one design scaled,
    and scaled into the unit sphere they look alike, so keeping them apart would leak between splits."""
    return re.sub(r'[0-9]+(?:[.][0-9]+)?', '#', f"{library}/{stem}")


# ---------------------------------------------------------------- VRML2 reader
# Tokens: a bracketed block without nested nodes (an array of numbers or strings) is one token, parsed by numpy
# only when needed; this keeps the Python work per file proportional to its nodes, not to its numbers.
_TOKENS = re.compile(r'\[[^\[\]{}]*\]|"(?:[^"\\]|\\.)*"|[{}\[\]]|[^\s,{}\[\]"]+')
_COMMENTS = re.compile(r'"(?:[^"\\]|\\.)*"|#[^\n]*')
_IDENT = re.compile(r"[^\s0-9+\-,.{}\[\]\"'#\\][^\s,.{}\[\]\"'#\\]*\Z")  # VRML97 Id: no digit/sign first
_SCALAR = re.compile(r'[-+.0-9]|"|TRUE\Z|FALSE\Z')
_GROUPS = ("Group", "Transform", "Anchor", "Billboard", "Collision")
_NO_SURFACE = ("IndexedLineSet", "PointSet")  # lines and points have no area to sample
_END = np.array([-1], dtype=np.int64)
_UNSUPPORTED = ("Box", "Sphere", "Cone", "Cylinder", "Extrusion", "ElevationGrid", "Text", "Inline")


class _Parser:
    """Recursive descent over the tokens of one VRML97 file. Nodes are dicts {"": type, field: value}; a field
    value is a node, a list (MFNode), a raw bracketed block (str, numbers or strings) or a list of scalar tokens."""

    def __init__(self, tokens: list):
        self.tokens, self.i, self.defs = [*tokens, None, None], 0, {}  # two sentinels: look-ahead never overruns

    def take(self) -> str:
        tok = self.tokens[self.i]
        if tok is None:
            raise ValueError("unexpected end of file (unbalanced braces?)")
        self.i += 1
        return tok

    def node(self):
        tok = self.take()
        if tok == "USE":
            name = self.take()
            if name not in self.defs:
                raise ValueError(f"USE of undefined name {name!r}")
            return self.defs[name]
        if tok == "DEF":
            name = self.take()
            self.defs[name] = node = self.node()
            return node
        if tok == "NULL":
            return None
        if tok in ("PROTO", "EXTERNPROTO", "ROUTE"):
            raise ValueError(f"{tok} statements are not supported")
        if not _IDENT.match(tok) or self.take() != "{":
            raise ValueError(f"expected a node, found {tok[:40]!r}")
        node = {"": tok}
        while (field := self.take()) != "}":
            if not _IDENT.match(field):
                raise ValueError(f"expected a field name in {tok}, found {field[:40]!r}")
            node[field] = self.value()
        return node

    def value(self):
        tokens, tok = self.tokens, self.tokens[self.i]
        if tok is None:
            raise ValueError("unexpected end of file")
        if tok[0] == "[" and len(tok) > 1:  # a flat array block
            self.i += 1
            return tok
        if tok == "[":  # a list of nodes (or of scalars mixed with nodes)
            self.i += 1
            items = []
            while tokens[self.i] != "]":
                items.append(self.value() if _SCALAR.match(tokens[self.i] or "") else self.node())
            self.i += 1
            return items
        if tok in ("DEF", "USE", "NULL") or (tokens[self.i + 1] == "{" and _IDENT.match(tok)):
            return self.node()
        values = []
        while (tok := tokens[self.i]) is not None and _SCALAR.match(tok):
            values.append(tok)
            self.i += 1
        return values


def _numbers(block: str, dtype) -> np.ndarray:
    """The numbers of a bracketed block; a non-number raises (numpy warns, the caller turns warnings to errors)."""
    return np.fromstring(block[1:-1].replace(",", " "), dtype=dtype, sep=" ")


def _scalars(node: dict, field: str, default: list[float]) -> np.ndarray:
    v = node.get(field)
    return np.array(default if v is None else [float(x) for x in v], dtype=np.float64)


def _transform(node: dict) -> np.ndarray:
    """4x4 matrix of a VRML Transform: T * C * R * SR * S * -SR * -C (VRML97 §6.52)."""
    def rot(axis_angle):
        axis, angle = axis_angle[:3], axis_angle[3]
        n = np.linalg.norm(axis)
        m = np.eye(4)
        if n > 0 and angle != 0:
            x, y, z = axis / n
            k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
            m[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k  # Rodrigues
        return m

    def shift(t):
        m = np.eye(4)
        m[:3, 3] = t
        return m

    t, c = _scalars(node, "translation", [0, 0, 0]), _scalars(node, "center", [0, 0, 0])
    r, sr = rot(_scalars(node, "rotation", [0, 0, 1, 0])), rot(_scalars(node, "scaleOrientation", [0, 0, 1, 0]))
    s = np.diag([*_scalars(node, "scale", [1, 1, 1]), 1.0])
    return shift(t) @ shift(c) @ r @ sr @ s @ sr.T @ shift(-c)


def _fan(index: np.ndarray) -> np.ndarray:
    """(m, 3) triangles of -1-terminated polygons, each fan-triangulated from its first vertex."""
    ends = np.flatnonzero(index == -1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    n_tri = np.maximum(ends - starts - 2, 0)
    first = np.repeat(starts, n_tri)
    step = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)  # 0.. within each polygon
    return np.stack([index[first], index[first + step + 1], index[first + step + 2]], axis=1)


def _faces(ifs: dict, matrix: np.ndarray | None, out: list) -> None:
    """Queue (points, coordIndex, matrix) of an IndexedFaceSet; `_assemble` triangulates a whole file at once, since
    numpy's per-call cost would dominate for the many small face sets of KiCad files."""
    coord = ifs.get("coord")
    if not isinstance(coord, dict) or not isinstance(coord.get("point"), str) or "coordIndex" not in ifs:
        return  # no coordinates or no faces: nothing to sample (a legal, empty IndexedFaceSet)
    if "_xyz" not in coord:  # a Coordinate shared by DEF/USE is parsed once
        xyz = _numbers(coord["point"], np.float64)
        if len(xyz) % 3:
            raise ValueError(f"Coordinate point has {len(xyz)} numbers, not a multiple of 3")
        coord["_xyz"] = xyz.reshape(-1, 3)
    if not isinstance(ifs["coordIndex"], str):
        raise ValueError("coordIndex is not an array")
    out.append((coord["_xyz"], _numbers(ifs["coordIndex"], np.int64), matrix))


def _assemble(out: list) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of the queued face sets: indices offset per set, polygons fan-triangulated."""
    sizes = np.array([len(xyz) for xyz, _, _ in out])
    lengths = np.array([len(idx) + 1 for _, idx, _ in out])
    index = np.concatenate([a for _, idx, _ in out for a in (idx, _END)])  # -1 closes every set's last polygon
    limit = np.repeat(sizes, lengths)
    bad = (index < -1) | (index >= limit)
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"coordIndex {int(index[j])} out of range for {int(limit[j])} points")
    index = np.where(index >= 0, index + np.repeat(np.cumsum(sizes) - sizes, lengths), -1)
    vertices = np.concatenate([xyz if m is None else xyz @ m[:3, :3].T + m[:3, 3] for xyz, _, m in out])
    return vertices, _fan(index)


def _walk(node, matrix: np.ndarray | None, out: list, depth: int = 0) -> None:
    """Queue the face sets under `node`, with their 4x4 world matrix (None: identity, the common flat case)."""
    if depth > 200:
        raise ValueError("nodes nested too deep (a cycle of DEF/USE?)")
    if isinstance(node, list):
        for n in node:
            _walk(n, matrix, out, depth + 1)
        return
    if not isinstance(node, dict):
        return  # NULL, or an empty children [] block
    kind = node[""]
    if kind == "Transform":
        matrix = _transform(node) if matrix is None else matrix @ _transform(node)
    if kind in _GROUPS:
        _walk(node.get("children"), matrix, out, depth + 1)
    elif kind == "Switch":  # only the chosen child is drawn; the default -1 draws nothing
        choice, which = node.get("choice") or [], int(_scalars(node, "whichChoice", [-1])[0])
        choice = choice if isinstance(choice, list) else [choice]
        if 0 <= which < len(choice):
            _walk(choice[which], matrix, out, depth + 1)
    elif kind == "LOD":  # the most detailed level
        level = node.get("level") or []
        _walk(level[0] if isinstance(level, list) and level else level, matrix, out, depth + 1)
    elif kind == "Shape":
        _walk(node.get("geometry"), matrix, out, depth + 1)
    elif kind == "IndexedFaceSet":
        _faces(node, matrix, out)
    elif kind in _UNSUPPORTED:
        raise ValueError(f"{kind} geometry is not supported (only IndexedFaceSet)")
    # anything else (Appearance, NavigationInfo, Viewpoint, lights, IndexedLineSet, PointSet, ...) has no surface


def read_vrml(path=None, text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 (n, 3), triangles int64 (m, 3)) of a VRML 2.0 file, in its own (world) coordinates.

    Reads the subset KiCad's exporters write: Shape / IndexedFaceSet with Coordinate points and -1-separated
    polygons (fan-triangulated), Group / Transform / Switch / LOD, DEF / USE, comments. Anything unreadable, or a
    file without a face, raises one DatasetError line naming the file.
    """
    where = str(path) if path is not None else "<text>"
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        if not text.lstrip("\ufeff").startswith("#VRML V2.0"):
            raise ValueError("not a VRML 2.0 file (no '#VRML V2.0' header)")
        tokens = _TOKENS.findall(_COMMENTS.sub(lambda m: m[0] if m[0][0] == '"' else " ", text))
        parser, out = _Parser(tokens), []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy only warns on a non-number inside an array
            while parser.tokens[parser.i] is not None:
                _walk(parser.node(), None, out)
            vertices, faces = _assemble(out) if out else (None, ())
    except (ValueError, IndexError, TypeError, OSError, DeprecationWarning, RecursionError) as e:
        raise DatasetError(f"{where}: {' '.join(str(e).split())[:160]}") from None
    if not len(faces):
        raise DatasetError(f"{where}: no geometry (no IndexedFaceSet with faces)")
    return vertices, faces


# ---------------------------------------------------------------- geometry
def geometry_hash(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Equal for geometry-identical files: the rounded corner coordinates of every triangle, in file order."""
    corners = np.round(vertices[faces], 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.blake2b(corners.tobytes(), digest_size=16).hexdigest()


def sample_surface(vertices: np.ndarray, faces: np.ndarray, points: int, seed: int) -> np.ndarray:
    """`points` area-weighted surface samples, y up (from KiCad's z up), centred, in the unit sphere; float32."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not area.sum() > 0:
        raise ValueError("no surface (all faces have zero area)")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(faces), size=points, p=area / area.sum())
    u, v = rng.random((2, points, 1))
    flip = (u + v) > 1  # fold the unit square onto the triangle: uniform barycentric samples
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    pts = a[tri] + u * (b[tri] - a[tri]) + v * (c[tri] - a[tri])
    pts = pts @ Z_UP_TO_Y_UP.T
    pts -= pts.mean(axis=0)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float32)


# ---------------------------------------------------------------- the package
HINT = f"install {PACKAGE} (sudo apt-get install -y {PACKAGE}), or pass --deb PATH or --models DIR"


def locate(deb=None, models=None) -> tuple[str, Path, dict]:
    """("models", folder, source) or ("deb", file, source): the first of --models, --deb, installed, download."""
    if models is not None:
        models = Path(models)
        if not any(models.glob("*.3dshapes")):
            raise DatasetError(f"no *.3dshapes folders in {models}")
        return "models", models, {"package": PACKAGE, "version": None, "from": str(models)}
    if deb is not None:
        deb = Path(deb)
        return "deb", deb, debs.deb_info(deb, PACKAGE, HINT)
    if any(INSTALLED.glob("*.3dshapes")):
        return "models", INSTALLED, {"package": PACKAGE, "version": debs.installed_version(PACKAGE),
                                     "from": str(INSTALLED)}
    deb = debs.download(PACKAGE, HINT)
    return "deb", deb, debs.deb_info(deb, PACKAGE, HINT)


@contextlib.contextmanager
def opened(kind: str, path: Path):
    """(models folder, Debian copyright file or None) for the duration of the block; a .deb is extracted to a
    temporary folder (only *.wrl and the copyright file), removed afterwards."""
    if kind == "models":
        copyright_file = Path("/usr/share/doc", PACKAGE, "copyright") if path == INSTALLED else path / "copyright"
        yield path, copyright_file if copyright_file.is_file() else None
        return
    with debs.extracted(path, [f"./{MODELS_IN_DEB}/*.wrl", f"./{COPYRIGHT_IN_DEB}"], prefix="kicad3d-") as tmp:
        models = tmp / MODELS_IN_DEB
        if not any(models.glob("*.3dshapes/*.wrl")):
            raise DatasetError(f"cannot extract {path}: no .wrl files in it")
        copyright_file = tmp / COPYRIGHT_IN_DEB
        yield models, copyright_file if copyright_file.is_file() else None


def read_copyright(path: Path | None) -> dict[str, tuple[str, str]]:
    """{pattern: (licence, copyright)} stanzas of a machine-readable Debian copyright file, in file order (the last
    matching stanza wins, as DEP-5 says)."""
    if path is None:
        return {}
    stanzas = []
    for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
        fields, key = {}, None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, v = line.partition(":")
                fields[key] = v.strip()
        if "Files" in fields and "License" in fields:
            licence = fields["License"].split("\n")[0].strip()
            holder = " ".join(fields.get("Copyright", "").split())
            stanzas += [(p, (LICENCE_NAMES.get(licence, licence), holder)) for p in fields["Files"].split()]
    return _last_wins(stanzas)


def _last_wins(stanzas):
    out = {}
    for pattern, value in stanzas:
        out.pop(pattern, None)  # re-insert at the end: order = precedence
        out[pattern] = value
    return out


def licences_of(names: list[str], stanzas: dict) -> dict[str, tuple[str, str]]:
    """(licence, copyright) per "Lib.3dshapes/file.wrl" name; DEFAULT_LICENCE where no stanza matches."""
    order = {p: k for k, p in enumerate(stanzas)}
    exact = {p: k for p, k in order.items() if not any(ch in p for ch in "*?")}
    globs = [(k, re.compile(re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z"))  # DEP-5: only * and ?
             for p, k in order.items() if p not in exact]
    values = list(stanzas.values())
    out = {}
    for name in names:
        best = max([exact.get(name, -1)] + [k for k, p in globs if p.match(name)])
        out[name] = values[best] if best >= 0 else (DEFAULT_LICENCE, "")
    return out


# ---------------------------------------------------------------- selection
def select_models(items: list[dict], cap: int = FAMILY_CAP, seed: int = 0) -> tuple[list[dict], dict]:
    """Drop geometry duplicates (keep the first by name; merge the families of same-class copies), then keep at most
    `cap` models per family (seeded). Items need name, class, family, hash; returns (kept items, counts), the
    counts with the [dropped, kept] name pairs of duplicates across classes."""
    items = sorted(items, key=lambda r: r["name"])
    parent = {r["family"]: r["family"] for r in items}

    def root(f):
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    first, kept, cross = {}, [], []
    for r in items:
        if r["hash"] not in first:
            first[r["hash"]] = r
            kept.append(r)
            continue
        keep = first[r["hash"]]
        if keep["class"] != r["class"]:
            cross.append([r["name"], keep["name"]])  # same shape in two classes: the first copy keeps its label
            continue
        a, b = sorted((root(keep["family"]), root(r["family"])))
        parent[b] = a  # the alphabetically first family name names the merged family
    families = defaultdict(list)
    for r in kept:
        r["family"] = root(r["family"])
        families[r["family"]].append(r)
    out = []
    for fam, members in sorted(families.items()):
        if len(members) > cap:
            pick = np.random.default_rng(stable_hash(f"{seed}:cap:{fam}") % 2**32).choice(len(members), cap,
                                                                                         replace=False)
            members = [members[i] for i in sorted(pick)]
        out += members
    counts = {"duplicates": len(items) - len(kept) - len(cross), "cross_class_duplicates": cross,
              "capped": len(kept) - len(out)}
    return sorted(out, key=lambda r: (r["class"], r["name"])), counts  # class order = CLASSES order (sorted)


# ---------------------------------------------------------------- build
def build(out, points: int = 2048, seed: int = 0, deb=None, models=None, force: bool = False,
          cap: int = FAMILY_CAP, log=print) -> dict:
    """Build the benchmark into `out` (no-op when it already holds a complete build with the same settings)."""
    from tqdm import tqdm

    out, t0 = Path(out), time.time()
    kind, path, source = locate(deb, models)
    settings = {"builder_version": BUILDER_VERSION, "points": points, "seed": seed, "family_cap": cap,
                "split": dict(zip(kfold.SPLITS, SPLIT_FRACTIONS)), "folds": kfold.NUM_FOLDS, "source": source}
    done = out / "build.json"
    if not force and done.is_file() and all((out / f).is_file() for f in OUTPUTS):
        if json.loads(done.read_text(encoding="utf-8")).get("settings") == settings:
            log(f"{out} already holds this build ({points} points, seed {seed}); nothing to do.")
            return json.loads(done.read_text(encoding="utf-8"))
    if source["version"] and not source["version"].startswith(EXPECTED_VERSION):
        log(f"note: {PACKAGE} {source['version']}, not {EXPECTED_VERSION}: counts will differ from DESIGN §3")

    with opened(kind, path) as (root, copyright_file):
        libraries = sorted(d for d in root.glob("*.3dshapes") if d.is_dir())
        per_library = {d.name[:-len(".3dshapes")]: sorted(d.glob("*.wrl")) for d in libraries}
        unmatched = {lib: len(f) for lib, f in per_library.items() if library_class(lib) is None}
        todo = [(lib, f) for lib, files in per_library.items() if library_class(lib) for f in files]
        if not todo:
            raise DatasetError(f"no .wrl model of any kicad33 library under {root}")
        licences = licences_of([f"{f.parent.name}/{f.name}" for _, f in todo], read_copyright(copyright_file))
        items, clouds, failed = [], {}, []
        for lib, f in tqdm(todo, desc="reading models", unit="model", file=sys.stderr):
            name = f"{lib}/{f.stem}"
            try:
                vertices, faces = read_vrml(f)
                clouds[name] = sample_surface(vertices, faces, points, stable_hash(f"{seed}:{name}") % 2**32)
            except (DatasetError, ValueError) as e:  # a file we cannot read is skipped and reported, never fatal
                failed.append((name, " ".join(str(e).split())[:200]))
                continue
            licence, holder = licences[f"{f.parent.name}/{f.name}"]
            items.append({"name": name, "library": lib, "class": library_class(lib), "family": family_of(lib, f.stem),
                          "licence": licence, "copyright": holder, "hash": geometry_hash(vertices, faces)})

    rows, counts = select_models(items, cap, seed)
    if not rows:
        raise DatasetError(f"none of the {len(todo)} models could be read; see the errors above")
    for r, fold, split in zip(rows, kfold.assign_folds([r["class"] for r in rows], [r["family"] for r in rows], seed),
                              kfold.assign_groups([r["class"] for r in rows], [r["family"] for r in rows],
                                                  SPLIT_FRACTIONS, f"{seed}:split")):
        r["fold"], r["split"] = fold, kfold.SPLITS[split]
    rows = [{k: r[k] for k in ("name", "class", "family", "fold", "split", "licence", "copyright", "library")}
            for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    np.save(out / "points.npy", np.stack([clouds[r["name"]] for r in rows]))
    np.save(out / "labels.npy", np.array([CLASSES.index(r["class"]) for r in rows], dtype=np.int64))
    (out / "classes.json").write_text(json.dumps(list(CLASSES), indent=1))
    manifest = {"models": rows, "classes": list(CLASSES), "up": "y", "points": points, "seed": seed,
                "folds": kfold.NUM_FOLDS, "split_fractions": settings["split"], "source": source,
                "licence": f"{DEFAULT_LICENCE} unless a row says otherwise (per the Debian copyright file); derived "
                           "clouds of share-alike data: do not redistribute without the same licence"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    table = {c: {s: sum(r["class"] == c and r["split"] == s for r in rows) for s in kfold.SPLITS} for c in CLASSES}
    fam_table = {c: len({r["family"] for r in rows if r["class"] == c}) for c in CLASSES}
    report = {"settings": settings, "models": len(rows), "families": len({r["family"] for r in rows}),
              "read": len(items), "classes": list(CLASSES), "table": table, "families_per_class": fam_table,
              "folds": dict(sorted(Counter(r["fold"] for r in rows).items())), **counts,
              "unmatched_libraries": unmatched, "failed": failed, "licences": dict(Counter(r["licence"] for r in rows)),
              "copyright_file": copyright_file is not None, "seconds": round(time.time() - t0, 1)}
    done.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    log(format_report(report))
    return report


def format_report(r: dict) -> str:
    lines = split_table(r["table"], r["models"], ("families", r["families_per_class"], r["families"]))
    lines.append(f"folds: {r['folds']}; licences: {r['licences']}")
    lines.append(f"read {r['read']} models; dropped {r['duplicates']} geometry duplicates, "
                 f"{len(r['cross_class_duplicates'])} duplicates of another class, {r['capped']} over the family cap; "
                 f"{len(r['failed'])} failed to read; libraries without a class: {r['unmatched_libraries']}")
    lines += [f"  failed {name}: {why}" for name, why in r["failed"]]
    lines.append(f"built in {r['seconds']} s")
    return "\n".join(lines)


# ---------------------------------------------------------------- dataset
class Kicad33(BuiltDataset):
    """Items are (points float32 (num_points, 3), label int) from a build, y up.

    split: "train" / "val" / "test" / None (all). fold=None: the default family split (55/15/30); fold=k (0..4):
    test = fold k, val = fold (k + 1) % 5, train = the other three. `groups` is the family of each item (the unit of
    the paired bootstrap), `manifest` its manifest row (name, class, family, fold, split, licence, ...)."""

    def __init__(self, root, split: str | None = "train", num_points: int | None = None, fold: int | None = None):
        root = require_build(root, OUTPUTS, ("kicad33", "train.data.kicad"))
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        rows = manifest["models"]
        index = kfold.select(split, [r["split"] for r in rows], [r["fold"] for r in rows], fold, manifest["folds"])
        super().__init__(root, index, labels=manifest["classes"], rows=rows, group_of=lambda r: r["family"],
                         num_points=num_points, split=split, fold=fold)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m train.data.kicad")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--points", type=int, default=2048, help="surface points per model")
    ap.add_argument("--seed", type=int, default=0, help="sampling, family-cap and split seed")
    ap.add_argument("--deb", help=f"a {PACKAGE} .deb (default: the installed package, else apt-get download)")
    ap.add_argument("--models", help="a 3dmodels folder of <Lib>.3dshapes/*.wrl instead of the package")
    ap.add_argument("--cap", type=int, default=FAMILY_CAP, help="at most this many models per family")
    ap.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    args = ap.parse_args(argv)
    try:
        build(args.out, args.points, args.seed, args.deb, args.models, args.force, args.cap)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
