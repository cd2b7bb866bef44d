"""The offline benchmark protocol: Any2Point on SweetHome3D with the three packaged backbones, the from-scratch and
linear-probe baselines for each, and ablations (no PE, the other projection, no guided adapter) for one backbone.

    python -m train.data.sh3d --out data/sh3d          # once
    python benchmarks/sh3d_suite.py [--only NAME ...] [--ablation-backbone whisper] [--install]

Runs one after another (each resumable: kill it and start it again), skipping runs that already have a
result.json. `--install` copies the three Any2Point entries into zoo/checkpoints/ (the embedded defaults).
Then `python benchmarks/results_table.py` builds the README table from the logs.
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = {"dinov2s": "vision", "minilm": "language", "whisper": "audio"}


def runs(ablation_backbone):
    out = []
    for short, modality in BACKBONES.items():
        out.append((f"any2point-{modality}-{short}-sh3d", short, []))
    for short, modality in BACKBONES.items():
        out.append((f"baseline-linear-probe-{short}", short, ["--variant", "linear_probe"]))
        out.append((f"baseline-from-scratch-{short}", short, ["--variant", "from_scratch"]))
    other = "2d" if ablation_backbone in ("minilm", "whisper") else "1d"
    out += [(f"ablation-no-pe-{ablation_backbone}", ablation_backbone, ["--pe", "none"]),
            (f"ablation-pe-{other}-{ablation_backbone}", ablation_backbone, ["--pe", other]),
            (f"ablation-no-guided-{ablation_backbone}", ablation_backbone, ["--no-guided"])]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="run only these names")
    p.add_argument("--ablation-backbone", default="whisper", choices=list(BACKBONES))
    p.add_argument("--runs-dir", default="runs/sh3d")
    p.add_argument("--install", action="store_true", help="copy finished Any2Point entries into zoo/checkpoints/")
    p.add_argument("--dry-run", action="store_true")
    a, extra = p.parse_known_args(argv)
    for name, short, flags in runs(a.ablation_backbone):
        if a.only and name not in a.only:
            continue
        out = ROOT / a.runs_dir / name
        if (out / "result.json").exists():
            print(f"[done] {name}")
        else:
            cmd = [sys.executable, str(ROOT / "train/run.py"), "--config", str(ROOT / f"train/configs/sh3d_{short}.toml"),
                   "--output-dir", str(out), "--name", name, "--resume", *flags, *extra]
            print(f"[run] {name}: {' '.join(cmd[1:])}", flush=True)
            if not a.dry_run:
                subprocess.run(cmd, check=True, cwd=ROOT)
        if a.install and name.startswith("any2point-") and (out / "entry" / "config.json").exists():
            dest = ROOT / "zoo" / "checkpoints" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(out / "entry", dest)
            print(f"[installed] {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
