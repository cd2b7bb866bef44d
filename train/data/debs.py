"""Debian packages a dataset builder reads, fetched without installing anything: `apt-get download` (no root) into
$ANY2POINT_CACHE/debs once, then only the files the builder needs are extracted
(`dpkg-deb --fsys-tarfile | tar -x --wildcards`) into a temporary folder that is removed afterwards."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import DatasetError


def cache_dir() -> Path:
    return Path(os.environ.get("ANY2POINT_CACHE") or Path.home() / ".cache" / "any2point") / "debs"


def run(cmd, hint: str, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with text output; a missing tool is a DatasetError ending in `hint` (what to do instead)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise DatasetError(f"cannot run {cmd[0]} ({e.strerror}); {hint}") from None


def installed_version(package: str) -> str | None:
    """The installed package's version, or None (not installed, or no dpkg)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def deb_info(deb: Path, package: str, hint: str) -> dict:
    """{package, version, from, bytes} of a .deb; a DatasetError when it is missing or not a .deb of `package`."""
    if not deb.is_file():
        raise DatasetError(f"{deb} not found; download it with: apt-get download {package}")
    res = run(["dpkg-deb", "-f", str(deb), "Package", "Version"], hint, timeout=60)
    fields = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    if res.returncode or fields.get("Package") != package:
        why = " ".join(res.stderr.split())[:120] or f"package {fields.get('Package')!r}"
        raise DatasetError(f"{deb} is not a {package} .deb ({why})")
    return {"package": package, "version": fields.get("Version"), "from": str(deb), "bytes": deb.stat().st_size}


def download(package: str, hint: str) -> Path:
    """The package's .deb from the cache folder, downloaded there once with `apt-get download`."""
    folder = cache_dir()
    found = sorted(folder.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    res = run(["apt-get", "download", package], hint, cwd=folder, timeout=3600)
    found = sorted(folder.glob(f"{package}_*.deb"))
    if res.returncode or not found:
        why = " ".join((res.stderr or res.stdout).split())[:160]
        raise DatasetError(f"cannot get {package}: apt-get download failed ({why}); {hint}")
    return found[-1]


@contextlib.contextmanager
def extracted(deb: Path, patterns: list[str], prefix: str = "deb-"):
    """A temporary folder holding the .deb's files that match `patterns` (tar wildcards such as
    "./usr/share/x/*.sh3f"), removed after the block. A pattern matching nothing is not an error (the caller checks
    what it needs); a broken archive is."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as unpack:
            tar = subprocess.run(["tar", "-x", "-C", str(tmp), "--wildcards", *patterns], stdin=unpack.stdout,
                                 capture_output=True, text=True)
            unpack.stdout.close()
            err = unpack.stderr.read().decode(errors="replace")
        # tar also fails when a pattern is absent (it extracts the rest): only that failure is harmless
        tar_err = [line for line in tar.stderr.splitlines() if "Not found in archive" not in line
                   and "Exiting with failure status" not in line]
        if unpack.returncode or tar_err:
            raise DatasetError(f"cannot extract {deb}: {' '.join((err or chr(10).join(tar_err)).split())[:160]}")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
