"""The generated blocks of README.md, docs/ and the model cards are what the committed records render, and a changed
record makes `python -m benchmarks render --check` fail naming the stale block."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import render

ROOT = Path(__file__).resolve().parents[1]


def copy_tree(dest):
    """What render reads and writes: the docs, the records and the shipped entries' configs and cards."""
    shutil.copy(ROOT / "README.md", dest / "README.md")
    shutil.copytree(ROOT / "docs", dest / "docs")
    shutil.copytree(ROOT / "benchmarks" / "results", dest / "benchmarks" / "results")
    for entry in (ROOT / "zoo" / "checkpoints").iterdir():
        (dest / "zoo" / "checkpoints" / entry.name).mkdir(parents=True)
        for name in ("config.json", "README.md"):
            shutil.copy(entry / name, dest / "zoo" / "checkpoints" / entry.name / name)
    return dest


def test_measurements_of_an_entry_are_of_its_shipped_weights():
    """The NCM records and the up-axis tables measure shipped entries by name; an entry retrained since leaves them
    describing weights that are gone. Rerun: `python -m benchmarks low-data ncm --benchmark B --entries NAME`,
    `python -m benchmarks up-axis [--data data/kicad33] [--split val] --entries NAME` (see each table's command)."""
    from train.record import load_records
    from zoo.registry import adapter_sha256
    results = ROOT / "benchmarks" / "results"
    stale = [r.name for r in load_records(results / "low-data") if r.method == "ncm"
             and (r.entry or {}).get("adapter_sha256") != adapter_sha256(r.run_config["entry"])]
    for path in sorted(results.glob("up_axis*.json")):
        stale += [f"{path.name}: {name}" for name, row in json.loads(path.read_text())["results"].items()
                  if row.get("adapter_sha256") != adapter_sha256(name)]
    assert not stale, f"measured on weights no longer shipped: {stale[:8]} ({len(stale)} in all)"


def test_committed_files_equal_a_fresh_render():
    stale = [f"{b.path}: {b.name}" for b, _ in render.stale(ROOT)]
    assert not stale, f"run `python -m benchmarks render`: {stale}"


def test_check_names_the_block_a_changed_record_makes_stale(tmp_path):
    root = copy_tree(tmp_path)
    render.main(["--check", "--root", str(root)])  # the copy is clean
    path = root / "benchmarks/results/kicad33-e30/any2point-language-minilm-kicad33.json"
    rec = json.loads(path.read_text())
    wrong = [i for i, c in enumerate(rec["test_correct"]) if not c][:40]
    for i in wrong:  # the run got 40 more test models right than it did
        rec["test_correct"][i] = 1
    path.write_text(json.dumps(rec, indent=1) + "\n")
    with pytest.raises(SystemExit) as err:
        render.main(["--check", "--root", str(root)])
    message = str(err.value)
    assert "docs/RESULTS.md: kicad33-e30-comparison" in message
    assert "docs/RESULTS.md: kicad33-vs-pointnext" in message  # the same runs, against PointNeXt-S
    assert "zoo/checkpoints/any2point-language-minilm-kicad33/README.md: comparison" in message
    # the Whisper card compares the Whisper entry's own run, which is another record (campaign kicad33-recipe)
    assert "any2point-audio-whisper-kicad33" not in message
    assert "kicad33-e30-runs" not in message  # that table reads the result, which was not edited
    assert "README.md: entries" not in message and "sh3d" not in message
    before = (root / "docs/RESULTS.md").read_text()
    render.main(["--root", str(root)])
    render.main(["--check", "--root", str(root)])
    after = (root / "docs/RESULTS.md").read_text()
    changed = [ln for ln in after.splitlines() if ln not in before.splitlines()]
    assert changed and all(ln.startswith(("| minilm-l6 |", "Resolution:", "| Any2Point (minilm-l6) |"))
                           for ln in changed)
    card = (root / "zoo/checkpoints/any2point-language-minilm-kicad33/README.md").read_text()
    assert any(ln in card for ln in changed if ln.startswith("| minilm"))


def test_check_from_the_command_line_and_a_missing_block(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "render", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"all {len(render.BLOCKS)} generated blocks match the records" in proc.stdout
    root = copy_tree(tmp_path)
    text = (root / "docs/RESULTS.md").read_text()
    (root / "docs/RESULTS.md").write_text(re.sub(r"<!-- load-time:start -->.*?<!-- load-time:end -->", "", text,
                                                 flags=re.S))
    with pytest.raises(SystemExit, match="docs/RESULTS.md has no block 'load-time'"):
        render.main(["--root", str(root), "--only", "load-time"])


def readme_body():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return front, body


def test_readme_is_short_and_serves_what_it_says():
    front, body = readme_body()
    assert len(body.splitlines()) <= 200
    from zoo.hub import _hub_id
    from zoo.registry import TASK_DEFAULTS
    served = set()
    for task in TASK_DEFAULTS.values():
        for name in task.values():
            served.add(_hub_id(json.loads((ROOT / "zoo/checkpoints" / name / "config.json").read_text())["backbone"]))
    models = re.search(r"^models:\n((?:  - .+\n)+)", front + "\n", re.M).group(1)
    assert sorted(m.strip()[2:] for m in models.splitlines()) == sorted(served)
    assert "pip install -r requirements.txt && python app.py" in body
    assert "pip install -r requirements-dev.txt && python -m pytest" in body
    assert "docs/screenshot.png" in body and (ROOT / "docs/screenshot.png").is_file()


def test_readme_prose_types_no_result_number():
    """Numbers in the README come from the rendered block; prose and examples carry none but names and versions."""
    _, body = readme_body()
    body = re.sub(r"<!-- (\S+):start -->.*?<!-- \1:end -->", "", body, flags=re.S)  # generated
    body = re.sub(r"```.*?```", "", body, flags=re.S)  # code
    body = re.sub(r"`[^`]*`", "", body)  # inline code: names, flags, shapes
    body = re.sub(r"\(https?://[^)]*\)|\([\w./-]+\.(?:md|png)\)", "", body)  # link targets
    allowed = r"ECCV 2024|\b[123]D\b|CC-BY-SA-4\.0|CC-BY 3\.0|CC0|GPL-3\.0|Apache-2\.0"
    left = re.findall(r"(?<![\w.-])\d[\d.,%]*(?![\w-])", re.sub(allowed, "", body))  # not inside names (kicad33)
    assert not left, left
