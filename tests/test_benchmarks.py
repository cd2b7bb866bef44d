"""The benchmark commands run and print the tables they promise: speed (--quick), overhead, the tables built from run
records, and the app load test (on a stand-in app, and on the real app when it has a /predict endpoint)."""
import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *extra.pop("path", [])]), OMP_NUM_THREADS="1",
                GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", **extra)


def table(md, title):
    """The rows (as lists of cells) of the first markdown table after the heading containing `title`."""
    assert not title or title in md, md
    section = md.split(title, 1)[1] if title else md
    rows, started = [], False
    for ln in section.splitlines():
        if ln.startswith("|"):
            started = True
            rows.append([c.strip() for c in ln.strip("|").split("|")])
        elif started:
            break
    assert len(rows) >= 2 and rows[1][0].startswith("---"), md
    return rows[0], rows[2:]


def number(cell):
    return float(cell.replace(",", "").rstrip("x%"))


# --- speed.py ---------------------------------------------------------------------------------------------------
def test_speed_quick(tmp_path):
    from zoo.sources import PACKAGED
    available, _ = PACKAGED["whisper-tiny-en"].available()
    out = tmp_path / "SPEED.md"
    # one thread: on a loaded 2-core machine torch's default threads thrash (timings 10-40x slower)
    args = ["--quick", "--threads", "1", "--train-batch", "4", "--out", str(out)]
    if not available:  # the packaged backbone is not installed here: the same run on a small random one
        args += ["--backbones", "scratch:2d"]
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "speed", *args], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = out.read_text()
    assert md.strip() in proc.stdout
    assert re.search(r"^device: cpu .*\| torch \S+, 1 threads \| \d{4}-\d\d-\d\d \d\d:\d\d", md, re.M), md
    name = "whisper-tiny-en" if available else "scratch:2d"

    head, rows = table(md, "## Tokenizer")
    assert head == ["backbone", "device", "points", "tokens", "median ms"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(name, "cpu", "1,024"), (name, "cpu", "2,048")]
    assert all(number(r[4]) > 0 for r in rows)

    head, rows = table(md, "## Adapted forward")
    assert len(rows) == 1 and rows[0][0] == f"{name} (cpu)" and rows[0][2] == "2,048" and rows[0][3] == "129"
    bare, adapted, off, e2e, ratio, ratio_off, ratio_e2e, share = (number(rows[0][i]) for i in range(4, 12))
    assert bare > 0 and adapted > 0 and off > 0 and e2e > 0 and 0 < share < 100
    # the ratios are of the printed medians
    assert abs(ratio - adapted / bare) < 0.01 + 0.01 * ratio
    assert abs(ratio_off - adapted / off) < 0.01 + 0.01 * ratio_off
    assert abs(ratio_e2e - e2e / bare) < 0.01 + 0.01 * ratio_e2e

    head, rows = table(md, "## Training step")
    assert head[-3:] == ["step ms", "clouds/s", "peak memory MB"]
    assert [r[2] for r in rows] == ["1,024", "2,048"]
    for r in rows:
        params, step, cps, peak = number(r[3]), number(r[4]), number(r[5]), number(r[6])
        assert params > 0 and step > 0 and cps > 0 and peak >= 0
        assert abs(cps - 4 / (step / 1e3)) < 0.02 * cps + 0.01  # batch 4 / step time
    assert "Peak memory: peak RSS above the model at rest" in md or "ru_maxrss" in md


def test_speed_arguments():
    from benchmarks import speed
    a = speed.parse_args(["--quick"])
    assert a.repeats == 2 and a.sizes == [1024, 2048] and a.specs == ["packaged:whisper-tiny-en"]
    assert a.out == ""  # CI's quick run never overwrites the README-linked SPEED.md
    assert speed.parse_args(["--quick", "--out", "x.md"]).out == "x.md"
    a = speed.parse_args(["--backbones", "minilm-l6,timm:vit_tiny", "--repeats", "3"])
    assert a.specs == ["packaged:minilm-l6", "timm:vit_tiny"] and a.sizes == [1024, 2048, 8192, 32768]
    a = speed.parse_args([])
    assert a.specs == list(speed.PACKAGED) and a.repeats == 10 and a.out.endswith("benchmarks/SPEED.md")
    assert speed.devices_for("cpu") == [torch.device("cpu")]
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            speed.devices_for("cuda")


def test_speed_interleaves_and_takes_medians():
    from benchmarks import speed
    calls = []
    t = speed.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, torch.device("cpu"),
                          repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then alternating order
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())


# --- overhead.py ------------------------------------------------------------------------------------------------
def test_overhead(capsys):
    from benchmarks import overhead
    threads = torch.get_num_threads()
    try:
        f = overhead.main(["--repeats", "2", "--depth", "2", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    head, rows = table(out, "")
    assert head[:4] == ["backbone", "blocks x width", "points", "tokens"] and len(rows) == 1
    assert rows[0][1:4] == ["2x384", "2,048", "129"]
    bare, adapted, off, e2e = (number(rows[0][i]) for i in (4, 5, 6, 7))
    assert bare > 0 and adapted > 0 and off > 0 and e2e > 0
    m = re.search(r"adapted / bare = ([\d.]+)x\s+adapted / adapters off = ([\d.]+)x\s+end to end / bare = ([\d.]+)x"
                  r"\s+tokenizer / end to end = ([\d.]+)%", out)
    assert m and abs(float(m.group(1)) - f["ratio"]) < 0.006 and abs(float(m.group(2)) - f["ratio_adapters"]) < 0.006
    assert abs(float(m.group(3)) - f["ratio_end_to_end"]) < 0.006 and 0 < float(m.group(4)) < 100


# --- run records and the tables read from them -----------------------------------------------------------------
def record(name, backbone="whisper-tiny-en", method="any2point", ablation=None, seed=0, fold=None, acc=0.5,
           correct=None, groups=None, modality="audio", pe="2d", val=None, cps=15.0, trainable=1000, shots=None):
    """A finished run's record as train/run.py writes it (the values made up, the fields real)."""
    from train.record import RunRecord
    correct = [1] * round(acc * 60) + [0] * (60 - round(acc * 60)) if correct is None else list(correct)
    result = dict(best_epoch=4, val_acc=acc - 0.1 if val is None else val, test_acc=sum(correct) / len(correct),
                  test_mean_class_acc=acc - 0.05, test_acc_vote=acc + 0.01, test_mean_class_acc_vote=acc - 0.04,
                  votes=10, test_n=len(correct), epochs=50, train_seconds=150.0, clouds_per_s=cps, peak_mb=2000.0,
                  trainable_parameters=trainable, device="cpu")
    return RunRecord(name=name, benchmark="sh3d", backbone=backbone, method=method, ablation=ablation, seed=seed,
                     fold=fold, shots=shots, status="done", run_config={"dataset": "sh3d", "seed": seed},
                     result=result, entry={"modality": modality, "variant": method, "model": {"pe": pe}},
                     test_correct=correct, test_groups=groups)


def test_results_table_rows_from_records_pool_seeds_and_split_folds(tmp_path, capsys):
    from benchmarks import results_table
    recs = [record("whisper-noguided", ablation="no-guided", acc=0.5),
            record("dinov2s", "dinov2-s14", modality="vision", pe="auto", acc=0.8),
            record("dinov2s-linear", "dinov2-s14", "linear_probe", modality="vision", pe="auto", acc=0.6),
            record("dinov2s-nope", "dinov2-s14", ablation="no-pe", modality="vision", pe="none", acc=0.7),
            record("minilm", "minilm-l6", modality="language", pe="auto", acc=0.75)]
    rows = results_table.rows(recs)
    md = results_table.table(rows)
    head, body = table(md, "")
    assert head[:4] == ["backbone", "method", "split", "test acc"] and len(body) == 5
    assert body[0] == ["dinov2-s14 (vision)", "Any2Point", "default", "80.0%", "81.0%", "75.0%", "70.0%", "1,000",
                       "2.5", "1"]
    assert [r[1] for r in body] == ["Any2Point", "Any2Point ablation: no PE", "linear probe (frozen, PE on, no adapters)",
                                    "Any2Point", "Any2Point ablation: no guided adapter"]
    assert [r[0] for r in body] == ["dinov2-s14 (vision)"] * 3 + ["minilm-l6 (language)", "whisper-tiny-en (audio)"]

    # further seeds of one recipe: one row, mean ± sample standard deviation; folds of it: a row of their own
    more = [record("dinov2s-seed1", "dinov2-s14", seed=1, modality="vision", pe="auto", acc=0.7),
            record("dinov2s-seed2", "dinov2-s14", seed=2, modality="vision", pe="auto", acc=0.75)]
    folds = [record(f"dinov2s-fold{k}", "dinov2-s14", fold=k, modality="vision", pe="auto", acc=0.5) for k in range(5)]
    head, body3 = table(results_table.table(results_table.rows(recs + more + folds)), "")
    assert len(body3) == 6 and body3[2:] == body[1:]
    assert body3[0][:7] == ["dinov2-s14 (vision)", "Any2Point", "default", "75.0% ± 5.0", "76.0% ± 5.0",
                            "70.0% ± 5.0", "65.0% ± 5.0"]
    assert body3[0][-1] == "3" and body3[1][2] == "folds 0–4" and body3[1][-1] == "5"

    # a running record (the run has not ended) is no row; the command reads a folder of records
    from train.record import RunRecord
    running = RunRecord(name="still-training", benchmark="sh3d", backbone="minilm-l6", method="any2point")
    folder = tmp_path / "records"
    for r in recs + [running]:
        r.save(folder / f"{r.name}.json")
    results_table.main(["--records", str(folder)])
    assert capsys.readouterr().out.strip() == md
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no finished run records"):
        results_table.main(["--records", str(tmp_path / "empty")])


def test_run_record_round_trip_and_bad_files(tmp_path):
    from train.record import RecordError, RunRecord, load_records
    r = record("a", correct=[1, 0, 1], groups=["f1", "f1", "f2"])
    r.save(tmp_path / "a.json")
    back = RunRecord.load(tmp_path / "a.json")
    assert back == r and back.key == ("sh3d", "whisper-tiny-en", "any2point", None, 0, None, None)
    assert back.groups() == ["f1", "f1", "f2"] and record("b", correct=[1, 0]).groups() == ["0", "1"]
    # finish() keeps trivial groups out and the per-model list out of the result
    fresh = RunRecord(name="c", benchmark="kicad33", backbone="minilm-l6", method="pointnext", shots=10)
    fresh.finish({"test_acc": 0.5, "test_correct": [1, 0]}, {"modality": "language", "adapter": {"sha256": "ab"}},
                 [1, 0], ["0", "1"])
    assert fresh.done and fresh.result == {"test_acc": 0.5} and fresh.test_groups is None
    assert fresh.entry["adapter_sha256"] == "ab" and fresh.recipe == ("kicad33", "minilm-l6", "pointnext", None, 10)
    (tmp_path / "bad.json").write_text(json.dumps({"run": "old-format", "run_config": {}}))
    with pytest.raises(RecordError, match="bad.json: not a run record .unknown field 'run'"):
        load_records(tmp_path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match="a JSON object is expected"):
        RunRecord.load(tmp_path / "bad.json")


def test_the_committed_records_are_typed_and_complete():
    """Every run record loads as a RunRecord, and a finished one's per-model list matches its result (a record
    still "running" belongs to a training job in progress)."""
    from train.record import campaign_folders, load_records
    folders = campaign_folders(ROOT / "benchmarks/results")
    assert folders
    for path in (ROOT / "benchmarks/results/gpu").glob("*.json"):  # GPU check records (benchmarks/gpu.py) instead
        rec = json.loads(path.read_text())
        assert rec["kind"] == "gpu-check" and rec["format_version"] == 1 and not rec["smoke"], path.name
        assert set(rec["recipes"]) == set(rec["memory_goal"]["met"]), path.name
    for folder in folders:
        for r in load_records(folder):
            assert r.benchmark and r.backbone and r.method, r.name
            assert len(r.test_correct) == r.result["test_n"] and \
                abs(sum(r.test_correct) / len(r.test_correct) - r.result["test_acc"]) < 1e-6, r.name


# --- app_load.py ------------------------------------------------------------------------------------------------
FAKE_APP = """
    import threading
    import gradio as gr
    from zoo.files import read_points

    calls, lock = [], threading.Lock()

    def predict(path, model="default"):
        pts = read_points(path)
        with lock:
            calls.append(1)
            n = len(calls)
        if FAIL_ON and n == FAIL_ON:
            raise gr.Error("a deliberate failure")
        return {"points": float(len(pts)) / 2048}

    with gr.Blocks() as demo:
        f, m, out = gr.File(), gr.Textbox("default"), gr.Label()
        gr.Button("Classify").click(predict, [f, m], out, api_name="predict")
    demo.queue(default_concurrency_limit=2)
"""


def load(tmp_path, *args, path=(), timeout=240):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "app-load", *args], env=env(path=list(path)),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.mark.parametrize("fail_on", [0, 2])
def test_app_load_on_a_stand_in_app(tmp_path, fail_on):
    (tmp_path / "stand_in_app.py").write_text(textwrap.dedent(FAKE_APP).replace("FAIL_ON", str(fail_on)))
    out = tmp_path / "load.md"
    proc = load(tmp_path, "--launch", "--app", "stand_in_app:demo", "--requests", "4", "--concurrency", "3",
                "--timeout", "120", "--out", str(out), path=[str(tmp_path)])
    assert proc.returncode == (1 if fail_on else 0), proc.stdout + proc.stderr[-3000:]
    md = out.read_text()
    assert md.strip() in proc.stdout
    head, rows = table(md, "# App load test")
    assert head == ["requests", "ok", "errors", "p50 latency s", "p95 latency s", "max latency s", "wall s",
                    "throughput req/s"]
    req, ok, err, p50, p95, mx, wall, tput = (number(c) for c in rows[0])
    assert (req, ok, err) == (4, 4 - bool(fail_on), bool(fail_on))
    assert 0 < p50 <= p95 <= mx <= wall and tput > 0
    if fail_on:
        assert "Errors:" in md and "1 x" in md


def test_app_load_on_the_real_app(tmp_path):
    proc = load(tmp_path, "--launch", "--requests", "3", "--concurrency", "3", "--timeout", "200")
    if proc.returncode and "has no /predict endpoint" in proc.stderr:
        pytest.skip("app.py has no /predict endpoint yet: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    head, rows = table(proc.stdout, "# App load test")
    assert [number(c) for c in rows[0][:3]] == [3, 3, 0]
    assert all(number(c) > 0 for c in rows[0][3:])


# --- suite.py ----------------------------------------------------------------------------------------------
def test_sh3d_suite_plan_seeds_and_install(tmp_path, capsys, monkeypatch):
    from benchmarks import suite as sh3d_suite
    plan = sh3d_suite.runs("whisper", seeds=(0, 1))
    names = [r.name for r in plan]
    assert len(names) == len(set(names)) == 9 + 3 + 9
    assert names[:3] == ["any2point-vision-dinov2s-sh3d", "any2point-language-minilm-sh3d",
                         "any2point-audio-whisper-sh3d"]
    # the "other projection" ablation is the one the recipe does not use (Whisper's recipe reads its table as 2D)
    assert [sh3d_suite.recipe_pe(b) for b in ("dinov2s", "minilm", "whisper")] == ["2d", "1d", "2d"]
    assert names[9:12] == ["ablation-no-pe-whisper", "ablation-pe-1d-whisper", "ablation-no-guided-whisper"]
    assert [r.name for r in sh3d_suite.runs("minilm")][10] == "ablation-pe-2d-minilm"
    flags = dict((r.name, r.flags) for r in plan)
    assert flags["ablation-no-pe-whisper"] == ["--ablation", "no-pe", "--pe", "none"]  # the record's key, as a flag
    assert [r.name for r in plan if r.install] == names[:3]
    assert flags["any2point-vision-dinov2s-sh3d"] == [] and flags["any2point-vision-dinov2s-sh3d-seed1"] == ["--seed", "1"]
    assert flags["baseline-linear-probe-minilm-seed1"] == ["--variant", "linear_probe", "--seed", "1"]
    controls = [(r.name, r.flags) for r in sh3d_suite.runs("whisper", seeds=(0, 1), controls=("minilm",))][21:]
    assert controls == [("control-random-backbone-minilm", ["--variant", "random_backbone"]),
                        ("control-random-backbone-minilm-seed1", ["--variant", "random_backbone", "--seed", "1"])]

    # finished runs are skipped; --install copies only the first-seed Any2Point entries
    runs = tmp_path / "runs"
    for name in ("any2point-vision-dinov2s-sh3d", "any2point-vision-dinov2s-sh3d-seed1", "baseline-linear-probe-dinov2s"):
        (runs / name / "entry").mkdir(parents=True)
        (runs / name / "result.json").write_text("{}")
        (runs / name / "entry" / "config.json").write_text(json.dumps({"name": name}))
    monkeypatch.setattr(sh3d_suite, "ROOT", tmp_path)
    sh3d_suite.main(["--runs-dir", "runs", "--seeds", "0", "1", "--dry-run", "--install", "--jobs", "2",
                     "--only", "any2point-vision-dinov2s-sh3d", "any2point-vision-dinov2s-sh3d-seed1",
                     "baseline-linear-probe-dinov2s", "baseline-from-scratch-dinov2s"])
    out = capsys.readouterr().out
    assert "[done] any2point-vision-dinov2s-sh3d\n" in out and "[done] baseline-linear-probe-dinov2s\n" in out
    assert "[run] baseline-from-scratch-dinov2s:" in out and "--variant from_scratch" in out
    assert f"--record {tmp_path}/benchmarks/results/runs/baseline-from-scratch-dinov2s.json" in out
    installed = sorted(p.name for p in (tmp_path / "zoo/checkpoints").iterdir())
    assert installed == ["any2point-vision-dinov2s-sh3d"]
    assert json.loads((tmp_path / "zoo/checkpoints/any2point-vision-dinov2s-sh3d/config.json").read_text()) == \
        {"name": "any2point-vision-dinov2s-sh3d"}


# --- compare_runs.py --------------------------------------------------------------------------------------------
def test_compare_runs_keys_from_record_fields_and_paired_bootstrap():
    import numpy as np
    from benchmarks import compare_runs
    recs = [record("x", "minilm-l6"), record("y", "minilm-l6", seed=1), record("z", "minilm-l6", "linear_probe"),
            record("w", ablation="pointpn-cpu", fold=1), record("s", "minilm-l6", "pointnext", shots=10)]
    got = compare_runs.collect(recs)
    assert sorted(got) == [("minilm-l6", "any2point"), ("minilm-l6", "linear_probe"),
                           ("whisper-tiny-en", "ablation:pointpn-cpu")]
    assert len(got[("minilm-l6", "any2point")]) == 2 and got[("whisper-tiny-en", "ablation:pointpn-cpu")][0].fold == 1
    assert list(compare_runs.collect(recs, shots=10)) == [("minilm-l6", "pointnext")]
    assert list(compare_runs.collect(recs, folds_only=True)) == [("whisper-tiny-en", "ablation:pointpn-cpu")]

    rng = np.random.default_rng(0)
    same = [rng.integers(0, 2, 60).astype(float) for _ in range(2)]
    acc_a, acc_b, d, lo, hi = compare_runs.compare(same, same)
    assert acc_a == acc_b and d == 0 and lo == hi == 0
    worse = [np.r_[np.ones(30), np.zeros(30)]]
    better = [np.r_[np.ones(30), np.ones(20), np.zeros(10)]]  # right on 20 more of 60 models, never on fewer
    acc_a, acc_b, d, lo, hi = compare_runs.compare(better, worse, boot=2000)
    assert (acc_a, acc_b) == (50 / 60, 0.5) and abs(d - 20 / 60) < 1e-12 and 0 < lo < d < hi
    # one model's difference among 60 cannot be told from noise
    _, _, d, lo, hi = compare_runs.compare([np.r_[1.0, np.zeros(59)]], [np.zeros(60)], boot=2000)
    assert lo <= 0 < d <= hi
    groups = [str(i) for i in range(60)]
    md = compare_runs.table({("minilm", "any2point"): [compare_runs.Tested(better[0], groups)],
                             ("minilm", "linear_probe"): [compare_runs.Tested(worse[0], groups)]}, boot=500)
    head, rows = table(md.split("\n\n")[0], "")
    assert head[1] == "Any2Point vs" and rows[0][:6] == ["minilm", "linear probe", "1 / 1", "83.3%", "50.0%", "+33.3"]
    assert rows[0][7] == "yes: Any2Point ahead" and "Resolution: 60 test models in 60 groups" in md


def test_paired_bootstrap_over_groups_and_pooled_folds():
    """Correlated models (one family) must widen the interval: 6 families of 10 identical outcomes carry the
    information of 6 models, not 60. Folds pool into one comparison over all their test models."""
    import numpy as np
    from benchmarks import compare_runs
    rng = np.random.default_rng(1)
    fam = rng.integers(0, 2, 6).astype(float)
    a, b = [np.repeat(fam, 10)], [np.repeat(1 - fam, 10)]
    by_model = compare_runs.compare(a, b, boot=4000)
    by_family = compare_runs.compare(a, b, boot=4000, groups=np.repeat(np.arange(6), 10))
    assert by_model[2] == by_family[2]
    assert (by_family[4] - by_family[3]) > 2 * (by_model[4] - by_model[3])
    T = compare_runs.Tested
    runs_a = [T(np.ones(4), list("abcd"), 0), T(np.zeros(3), list("efg"), 1), T(np.ones(2), list("hi"), 2)]
    runs_b = [T(np.zeros(4), list("abcd"), 0), T(np.zeros(3), list("efg"), 1)]  # fold 2 missing: left out
    pa, pb, groups = compare_runs.pool(runs_a, runs_b)
    assert pa[0].tolist() == [1, 1, 1, 1, 0, 0, 0] and pb[0].sum() == 0 and groups[4] == "1:e"


def test_method_ablations_plan_and_table(tmp_path):
    """Each faithful-method ablation is a recipe run plus --set flags, and its table row pairs it with that
    backbone's recipe run: interval, verdict, and the cost columns from the records and the costs record."""
    from benchmarks import compare_runs, suite
    plan = suite.method_ablation_runs()
    assert [r.name for r in plan] == [f"ablation-{k}-{v[0]}" for k, v in suite.METHOD_ABLATIONS.items()]
    flags = dict((r.name, r.flags) for r in plan)
    assert flags["ablation-guided-full-whisper"] == ["--ablation", "guided-full", "--set", "model.guided_mode=full"]
    assert "ablation-views-tilted-minilm" in [r.name for r in suite.runs(None, method_ablations=True)]
    assert "ablation-official-items-whisper" not in [r.name for r in suite.runs(None)]
    assert suite.ablation_text("no-pe") == "no PE" and "Point-PN" in suite.ablation_text("pointpn-cpu")
    # every ablation's flags are settings train/run.py accepts, and each lands in the run config (and its record)
    from train.run import parse_args, parse_setting, resolve
    for r in plan:
        cfg = resolve(parse_args(["--config", str(suite.recipe("kicad33", r.backbone)), *r.flags]))
        assert cfg.ablation == r.flags[1]
        for key, value in map(parse_setting, r.flags[3::2]):
            got = getattr(cfg.model, key[6:]) if key.startswith("model.") else getattr(cfg, key)
            assert got == (tuple(value) if isinstance(value, list) else value), (r.name, key)

    groups = [str(i // 2) for i in range(60)]
    base = [1] * 30 + [0] * 30
    better = [1] * 50 + [0] * 10
    recs = [record("recipe", correct=base, groups=groups, val=0.5, cps=14.7, trainable=382785),
            record("full", ablation="guided-full", correct=better, groups=groups, val=0.52, cps=9.5,
                   trainable=480897),
            record("items", ablation="official-items", correct=base, groups=groups, val=0.5)]
    recs[2].result.pop("val_acc")
    costs = {"guided-full-whisper-tiny-en": {"ms_per_cloud": 41.2}, "recipe-whisper-tiny-en": {"ms_per_cloud": 30.0},
             "pointpn-official-whisper-tiny-en": {"ms_per_cloud": 900.4, "trainable": 1234567,
                                                  "train_clouds_per_s": 0.7}}
    md = compare_runs.ablation_table(compare_runs.collect(recs), recs, boot=500, costs=costs)
    rows = {r.split(" | ")[1]: r.strip("| ").split(" | ") for r in md.splitlines()[2:] if r.startswith("| whisper")}
    full = rows[suite.ablation_text("guided-full")]
    assert full[2:6] == ["50.0% → 52.0%", "50.0%", "83.3%", "+33.3"] and full[7] == "yes: ablation ahead"
    assert full[8:] == ["480,897", "9.5", "41"]
    items = rows[suite.ablation_text("official-items")]
    assert items[7] == "no" and items[2] == "50.0% → —"
    assert rows["the recipe itself"][-3:] == ["382,785", "14.7", "30"] and rows["the recipe itself"][2] == "50.0%"
    official = rows[suite.ablation_text("pointpn-official")]  # too slow to train here: its cost, no accuracy
    assert official[2] == "not trained here (cost only)" and official[-3:] == ["1,234,567", "0.70", "900"]
    assert suite.ablation_text("pointpn-cpu") not in rows  # neither trained nor measured: no row
    assert "Resolution: 95% interval half-width" in md

    # cross-validation: the val column is the mean over the folds' records, never the default split's record
    folds = [record(f"r{k}", fold=k, correct=base[30 * k:30 * k + 30], groups=groups[30 * k:30 * k + 30], val=v)
             for k, v in enumerate((0.4, 0.5))]
    folds += [record(f"i{k}", ablation="official-items", fold=k, correct=better[30 * k:30 * k + 30],
                     groups=groups[30 * k:30 * k + 30], val=v, cps=10.0 + k, trainable=377388)
              for k, v in enumerate((0.6, 0.8))]
    md = compare_runs.ablation_table(compare_runs.collect(folds + recs, folds_only=True), folds + recs, boot=500,
                                     folds=True)
    rows = {r.split(" | ")[1]: r.strip("| ").split(" | ") for r in md.splitlines()[2:] if r.startswith("| whisper")}
    items = rows[suite.ablation_text("official-items")]
    assert items[2:6] == ["45.0% → 70.0%", "50.0%", "83.3%", "+33.3"] and items[8:10] == ["377,388", "10.5"]
    assert rows["the recipe itself"][2] == "45.0%"

    # candidates built on another ablation (base) are paired with its runs, the others left out (only)
    on_pn = [record("pn", ablation="pointpn-cpu", correct=better, groups=groups, val=0.55, cps=12.0),
             record("pn1024", ablation="pointpn-cpu-1024", correct=base, groups=groups, val=0.6, cps=9.0)]
    md = compare_runs.ablation_table(compare_runs.collect(recs + on_pn), recs + on_pn, boot=500, base="pointpn-cpu",
                                     only=("pointpn-cpu-1024",))
    assert "| backbone | candidate (change from the base) | val acc (base → candidate) | base test acc |" in md
    rows = {r.split(" | ")[1]: r.strip("| ").split(" | ") for r in md.splitlines()[2:] if r.startswith("| whisper")}
    assert set(rows) == {suite.ablation_text("pointpn-cpu-1024"), f"the base: {suite.ablation_text('pointpn-cpu')}"}
    cand = rows[suite.ablation_text("pointpn-cpu-1024")]
    assert cand[2:6] == ["55.0% → 60.0%", "83.3%", "50.0%", "-33.3"] and cand[7] == "yes: base ahead"
    assert rows[f"the base: {suite.ablation_text('pointpn-cpu')}"][2] == "55.0%"


def test_adapter_use_switches_each_part_off_and_back():
    """Any2Point.bare(*parts) for adapter_use's conditions: each changes the logits, both off is bare(), and all
    come back on."""
    from benchmarks import adapter_use
    from tiny import tiny_model
    torch.manual_seed(0)
    m = tiny_model(num_points=256).eval()
    with torch.no_grad():  # trained-looking adapters: the tiny model's start near zero
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    x = torch.randn(2, 256, 3)
    with torch.no_grad():
        on = m(x)
        outs = {}
        for label, parts in adapter_use.CONDITIONS.items():
            with m.bare(*parts):
                outs[label] = m(x)
        with m.bare():
            bare = m(x)
        assert torch.equal(m(x), on)  # restored
    assert all((o - on).abs().max() > 1e-4 for o in outs.values())
    assert (outs["bottleneck adapters off"] - outs["guided adapter off"]).abs().max() > 1e-4
    assert torch.equal(outs["both off"], bare)


def test_entries_table_reads_each_entry_now_and_before(monkeypatch):
    from benchmarks import entries_table
    from zoo.registry import TASK_DEFAULTS

    def config(val, resample):
        return {"metrics": {"val_acc": val, "test_acc": 0.5, "test_acc_vote": 0.55},
                "training": {"points": 512, "epochs": 50, "resample": resample, "sizes": {"val": 56, "test": 60}},
                "model": {"num_tokens": 64, "adapter_dropout": 0.1}}
    monkeypatch.setattr(entries_table, "entry_config",
                        lambda name, rev=None: None if rev and "minilm" in name else config(0.25 if rev else 0.75, not rev))
    md = entries_table.table("sh3d", "abc123")
    rows = {r.split(" | ")[0].strip("| `"): r.split(" | ") for r in md.splitlines()[2:5]}
    assert set(rows) == set(TASK_DEFAULTS["sh3d"].values())
    whisper = rows[TASK_DEFAULTS["sh3d"]["audio"]]
    assert whisper[1:5] == ["75.0%", "50.0%", "55.0%", "512 pts, 64 tokens, 50 ep, resampled, adapter dropout 0.1"]
    assert whisper[5] == "25.0%" and whisper[8].startswith("512 pts, 64 tokens, 50 ep")
    assert rows[TASK_DEFAULTS["sh3d"]["language"]][5:] == ["—", "—", "—", "— |"]  # absent at that revision
    assert "one test model is 1.7 points" in md and "`abc123`" in md


def test_up_axis_columns_on_a_tiny_model():
    """Told the truth, a z-up cloud is the y-up one exactly; the table shows the gap of "auto" to the y-up pass."""
    import numpy as np
    from benchmarks import up_axis
    from types import SimpleNamespace
    from tiny import tiny_model
    from zoo.serving import ZooModel
    m = ZooModel(tiny_model(num_points=256).eval())
    m.info = SimpleNamespace(up="y", trained=True)
    rng = np.random.default_rng(0)
    clouds = [(rng.normal(size=(256, 3)) * [1, 2, 0.5]).astype(np.float32) for _ in range(6)]
    acc, picks = up_axis.evaluate(m, clouds, [0, 1, 2, 0, 1, 2], six_axes=False)
    assert set(acc) == set(up_axis.COLUMNS) - {"z-up, auto over 6 axes", "y-up, auto over 6 axes"}
    assert acc['z-up, up="z"'] == acc["y-up"] and all(0 <= v <= 1 for v in acc.values())
    assert set(picks) == {'z-up, up="auto"', 'y-up, up="auto"'}
    record = dict(data="sh3d", split="test", clouds=6, split_size=60, auto_up=["y", "z"], auto_turns=4,
                  results={"tiny": dict(accuracy=acc, auto_picked_true_up=picks)})
    md = up_axis.table(record)
    gap = 100 * (acc['z-up, up="auto"'] - acc["y-up"])
    assert "a seeded 6 of 60" in md and md.splitlines()[4].endswith(f"| {gap:+.1f} |")


def test_an_up_axis_rerun_of_one_entry_keeps_the_others_rows(tmp_path):
    """Only a record of the same clouds, settings and columns is joined: a retrained entry is rerun alone."""
    from benchmarks import up_axis
    row = dict(accuracy={"y-up": 0.5}, auto_picked_true_up={}, adapter_sha256="b" * 64)
    old = dict(data="sh3d", split="val", clouds=56, split_size=56, auto_up=["y", "z"], auto_turns=4, auto_prior=2.0,
               results={"a": dict(row, adapter_sha256="a" * 64), "b": dict(row, adapter_sha256="0" * 64)})
    path = tmp_path / "up_axis_val.json"
    path.write_text(json.dumps(old))
    new = dict(old, results={"b": row})
    assert {**up_axis.kept_rows(path, new), **new["results"]} == {"a": old["results"]["a"], "b": row}
    assert list({**up_axis.kept_rows(path, new), **new["results"]}) == ["a", "b"]  # the table keeps its order
    assert up_axis.kept_rows(path, dict(new, clouds=30)) == {}  # other clouds: another measurement
    wider = dict(new, results={"b": dict(row, accuracy={"y-up": 0.5, "z-up, auto over 6 axes": 0.4})})
    assert up_axis.kept_rows(path, wider) == {}  # other columns would leave holes in the table
    assert up_axis.kept_rows(tmp_path / "none.json", new) == {}


def test_a_card_takes_the_comparison_only_of_its_own_run():
    """A shipped entry retrained under another recipe must not be given the rows of the run it replaced."""
    from benchmarks import compare_runs
    from train.record import RunRecord
    shipped = {"adapter": {"sha256": "a" * 64}, "training": {"dataset": "kicad33", "epochs": 30, "points": 512,
                                                            "seed": 0}}
    rec = lambda **kw: RunRecord(name="r", benchmark="kicad33", backbone="b", method="any2point", **kw)  # noqa: E731
    assert compare_runs.is_shipped(rec(entry={"adapter_sha256": "a" * 64}), shipped)
    assert not compare_runs.is_shipped(rec(entry={"adapter_sha256": "b" * 64}), shipped)
    old = dict(entry={}, run_config={"dataset": "kicad33", "epochs": 10, "points": 512, "seed": 0})
    assert not compare_runs.is_shipped(rec(**old), shipped)  # a record from before the sha: its settings decide
    assert compare_runs.is_shipped(rec(entry={}, run_config={**old["run_config"], "epochs": 30}), shipped)
    # fold runs are never the shipped weights: their rows go to a card only when they trained the entry's recipe
    model = {"num_tokens": 64, "adapter_dropout": 0.1}
    entry = {"training": {k: 1 for k in compare_runs.RECIPE_KEYS} | {"votes": 10, "dataset": "sh3d"}, "model": model}
    fold = dict(run_config={k: 1 for k in compare_runs.RECIPE_KEYS} | {"dataset": "sh3d", "fold": 2, "votes": 1},
                entry={"model": dict(model)})
    assert compare_runs.same_recipe(rec(**fold), entry)
    assert not compare_runs.same_recipe(rec(run_config={**fold["run_config"], "epochs": 20}, entry=fold["entry"]),
                                        entry)
    assert not compare_runs.same_recipe(rec(run_config=fold["run_config"], entry={"model": {**model, "num_tokens": 128}}),
                                        entry)


def test_a_card_compares_its_recipe_with_same_tokenizer_baselines_and_pointnext():
    """The card of an entry retrained under a candidate that won on val takes the candidate's fold runs (labelled as
    an ablation when they ran) as its own, keeps only baselines with its tokenizer, and always has PointNeXt-S."""
    from benchmarks import compare_runs
    tok = {"num_tokens": 64, "tokenizer": "pointpn", "k": 16}
    recipe = {k: 1 for k in compare_runs.RECIPE_KEYS} | {"dataset": "sh3d"}
    shipped = {"backbone": {"spec": "packaged:whisper-tiny-en"}, "training": recipe | {"votes": 10},
               "model": tok | {"adapter_dropout": 0.1}, "adapter": {"sha256": "a" * 64}}

    def rec(name, method="any2point", ablation=None, model=None, fold=0, backbone="whisper-tiny-en", acc=0.5):
        r = record(name, backbone=backbone, method=method, ablation=ablation, fold=fold, acc=acc)
        r.run_config = recipe | {"fold": fold}
        r.entry = {"model": dict(model if model is not None else shipped["model"])}
        return r
    old_tok = {"num_tokens": 64, "tokenizer": "onestage", "k": 16}
    recs = [rec("cand", ablation="pointpn-cpu", acc=0.7),
            rec("old", model=old_tok | {"adapter_dropout": 0.1}, acc=0.6),  # the recipe before: not this entry
            rec("lp-old", "linear_probe", model=old_tok),
            rec("lp", "linear_probe", model=tok | {"adapter": False}, acc=0.4),
            rec("pn", "pointnext", backbone="pointnext-sm", model={}, acc=0.8),
            rec("pn-512", "pointnext", ablation="points-512", backbone="pointnext-sm", model={}, acc=0.1),
            rec("pn-kicad", "pointnext", backbone="pointnext-sm", model={})]
    recs[-1].benchmark = "kicad33"  # another dataset's PointNeXt-S, and above a diagnostic run of it: not the row
    selected, folds = compare_runs.card_records(shipped, recs, folds_only=True)
    assert folds and sorted(r.name for r in selected) == ["cand", "lp", "pn"]
    assert {(r.backbone, compare_runs.method_key(r)) for r in selected} == {
        ("whisper-tiny-en", "any2point"), ("whisper-tiny-en", "linear_probe"), ("whisper-tiny-en", "pointnext")}
    md = compare_runs.table(compare_runs.collect(selected, True), boot=200, backbones=["whisper-tiny-en"])
    assert "| whisper-tiny-en | PointNeXt-S (from scratch) | 1 / 1 | 70.0% | 80.0% | -10.0 |" in md
    # no fold run of the recipe and no run with its weights: refused, not filled with another model's rows
    with pytest.raises(ValueError, match="weights"):
        compare_runs.card_records(shipped, recs[1:], folds_only=True)


def test_a_card_names_the_command_only_for_its_own_recipe(tmp_path):
    """A card missing a baseline gives the suite command that trains it, unless the entry predates its config's
    tokenizer (the command would then train another recipe's baseline)."""
    from benchmarks import compare_runs
    model = compare_runs._config_tokenizer("sh3d", "whisper")
    recipe = {k: 1 for k in compare_runs.RECIPE_KEYS} | {"dataset": "sh3d"}
    for tokenizer, expect in (({}, "--only baseline-linear-probe-whisper baseline-from-scratch-whisper"),
                              ({"tokenizer": "onestage"}, "the entry predates the tokenizer")):
        shipped = {"backbone": {"spec": "packaged:whisper-tiny-en"}, "training": recipe,
                   "model": model | tokenizer, "adapter": {"sha256": "a" * 64}}
        (tmp_path / "config.json").write_text(json.dumps(shipped))
        mine = record("mine", fold=None, acc=0.7)
        mine.entry = {"adapter_sha256": "a" * 64, "model": shipped["model"]}
        pn = record("pn", backbone="pointnext-sm", method="pointnext", fold=None, acc=0.6)
        lines = compare_runs.card_comparison(tmp_path, [mine, pn], folds_only=True, boot=100, campaign="c")
        assert any(ln.startswith("| whisper-tiny-en | PointNeXt-S (from scratch) | 1 / 1 | 70.0% | 60.0% |")
                   for ln in lines)
        note = next(ln for ln in lines if ln.startswith("Not yet run on this entry's recipe: linear probe, from"))
        assert expect in note and ("--runs-dir runs/c" in note) == (not tokenizer)


def test_a_card_compares_with_pointnext_on_the_schedule_val_chose(tmp_path):
    """Where PointNeXt-S's 100-epoch runs beat its recipe file's on val, the card's PointNeXt-S row is theirs, and its
    protocol line says so; without them it is the file's."""
    from benchmarks import compare_runs
    model = compare_runs._config_tokenizer("sh3d", "whisper")
    shipped = {"backbone": {"spec": "packaged:whisper-tiny-en"}, "model": model, "adapter": {"sha256": "a" * 64},
               "training": {k: 1 for k in compare_runs.RECIPE_KEYS} | {"dataset": "sh3d"}}
    (tmp_path / "config.json").write_text(json.dumps(shipped))
    mine = record("mine", acc=0.7)
    mine.entry = {"adapter_sha256": "a" * 64, "model": model}
    pn = record("pn", backbone="pointnext-sm", method="pointnext", acc=0.6, val=0.5)
    pn100 = record("pn100", backbone="pointnext-sm", method="pointnext", ablation="epochs-100", acc=0.8, val=0.55)

    def lines(records):
        return compare_runs.card_comparison(tmp_path, records, boot=100, campaign="c")
    with_longer = lines([mine, pn, pn100])
    assert any(ln.startswith("| whisper-tiny-en | PointNeXt-S (from scratch) | 1 / 1 | 70.0% | 80.0% | -10.0 |")
               for ln in with_longer)
    assert "sh3d_pointnext.toml, epochs-100: the schedule val chose over the file's)" in with_longer[-1]
    pn100.result["val_acc"] = 0.45
    file_only = lines([mine, pn, pn100])
    assert any(ln.startswith("| whisper-tiny-en | PointNeXt-S (from scratch) | 1 / 1 | 70.0% | 60.0% | +10.0 |")
               for ln in file_only)
    assert "(train/configs/sh3d_pointnext.toml) and the same split" in file_only[-1]


def test_runs_of_a_candidate_that_became_the_recipe_are_labelled_as_it():
    """After the choice the recipe's runs carry no ablation label, like the earlier recipe's runs of the same method
    and backbone: the full-data tables label them by their model settings, never pooling the two recipes."""
    from benchmarks.compare_runs import _config_tokenizer, recipe_label
    from benchmarks.low_data import curves
    now = _config_tokenizer("sh3d", "minilm")  # the recipe file's tokenizer: the CPU-sized Point-PN
    rec = lambda name, model, **kw: dataclasses.replace(  # noqa: E731
        record(name, backbone="minilm-l6", fold=None, **kw), entry={"model": model})
    new, old = rec("new", now, acc=0.7), rec("old", {"tokenizer": "onestage", "k": 16}, acc=0.5)
    official = rec("off", now | {"k": 64}, acc=0.6)  # Point-PN, but not the CPU size
    assert recipe_label(new).ablation == "pointpn-cpu"
    assert recipe_label(old).ablation is None and recipe_label(official).ablation is None
    labelled = rec("cand", now, ablation="pointpn-cpu-e100")
    assert recipe_label(labelled).ablation == "pointpn-cpu-e100"  # a label given when it ran is kept
    for schedule, label in (({"epochs": 100, "warmup_epochs": 10}, "pointpn-cpu-e100"),  # the furniture schedule
                            ({"epochs": 100, "warmup_epochs": 5}, "pointpn-cpu"), ({"epochs": 50}, "pointpn-cpu")):
        probe = dataclasses.replace(new, method="linear_probe", run_config=new.run_config | schedule)
        assert recipe_label(probe).ablation == label, schedule
    both = [recipe_label(dataclasses.replace(r, run_config={"epochs": 100, "warmup_epochs": 10}))
            for r in (new, dataclasses.replace(new, name="probe", method="linear_probe", test_correct=[0] * 60))]
    rows = curves(both, "sh3d", boot=50, ks=[None])  # the same label, two methods: two rows, never pooled
    assert {name: (row[None][0], row[None][3]) for name, row in rows.items()} == {
        "Any2Point (minilm-l6), pointpn-cpu-e100": (0.7, 1), "linear probe (minilm-l6), pointpn-cpu-e100": (0.0, 1)}
    rows = curves([recipe_label(r) for r in (new, old)], "sh3d", boot=50, ks=[None])
    assert sorted(rows) == ["Any2Point (minilm-l6)", "Any2Point (minilm-l6), pointpn-cpu"]
    assert (rows["Any2Point (minilm-l6), pointpn-cpu"][None][0], rows["Any2Point (minilm-l6)"][None][0]) == (0.7, 0.5)
    assert rows["Any2Point (minilm-l6)"][None][3] == 1  # one run each, not two pooled


def test_per_class_splits_two_runs_by_the_classes_of_their_build(tmp_path, capsys):
    """--per-class counts each class's test models right by either run, from the build they tested on, and refuses
    runs of other test models or a build that is not theirs."""
    from benchmarks import compare_runs
    from tests.test_datasets import fake_catalog
    from train.data import SH3D, sh3d
    cats = tmp_path / "cats"
    cats.mkdir()
    fake_catalog(cats / "Test.sh3f")
    sh3d.build(tmp_path / "out", points=64, seed=1, catalogs=cats, log=lambda s: None)
    test = SH3D(tmp_path / "out", "test")
    labels = [test.labels[t] for t in test.targets]  # 2 chairs, 2 tables
    a = record("a", correct=[1, 1, 0, 1], groups=test.groups)
    b = record("b", correct=[0, 0, 1, 1], groups=test.groups)
    for r in (a, b):
        r.run_config = {"data_root": str(tmp_path / "out")}
    rows = compare_runs.per_class(a, b)
    want = {c: (labels.count(c), sum(x for x, l in zip(a.test_correct, labels) if l == c),
                sum(x for x, l in zip(b.test_correct, labels) if l == c)) for c in set(labels)}
    assert {c: (n, ra, rb) for c, n, ra, rb in rows} == want and sorted(want) == ["chair", "table"]
    md = compare_runs.per_class_table(a, b, rows)
    assert md.splitlines()[-1] == "| all | 4 | 75.0% | 50.0% | -25.0 | -1 |"
    with pytest.raises(ValueError, match="same models"):
        compare_runs.per_class(a, record("c", correct=[1, 1, 1, 1], groups=list("wxyz")))
    a.test_groups = b.test_groups = list("wxyz")  # the runs agree, the build does not
    with pytest.raises(ValueError, match="not the one"):
        compare_runs.per_class(a, b)


def test_the_recipe_runs_table_shows_the_recipe_and_its_candidate_run_only(tmp_path):
    """runs_table(..., recipe=KEY): the candidate run that became the recipe reads as the recipe, unlabelled runs
    stay, and other candidates (their own table) are left out."""
    from benchmarks import render
    folder = tmp_path / "benchmarks/results/c"
    folder.mkdir(parents=True)
    for name, ablation, backbone in (("cand", "pointpn-cpu", "whisper-tiny-en"), ("later", None, "minilm-l6"),
                                     ("other", "pointpn-cpu-1024", "whisper-tiny-en")):
        record(name, backbone=backbone, ablation=ablation, modality="audio").save(folder / f"{name}.json")
    md = render.runs_table("c", recipe="pointpn-cpu")(tmp_path)
    rows = md.splitlines()[2:]
    assert len(rows) == 2 and not any("ablation" in r for r in rows)
    assert sorted(r.split(" | ")[0] for r in rows) == ["| minilm-l6 (audio)", "| whisper-tiny-en (audio)"]
    assert len(render.runs_table("c")(tmp_path).splitlines()[2:]) == 3  # without recipe=: every run


def test_the_entries_table_puts_the_fold_rows_of_each_card_side_by_side(tmp_path, monkeypatch):
    """RESULTS' entries table: each entry's recipe on the folds against its own-recipe baselines and PointNeXt-S (its
    card's rows, from card_records); an entry whose recipe has no fold runs is left out, not shown on its default
    split among fold rows."""
    from benchmarks import compare_runs, render
    from zoo import registry
    recipe = {k: 1 for k in compare_runs.RECIPE_KEYS} | {"dataset": "sh3d", "seed": 0}
    model = compare_runs._config_tokenizer("sh3d", "whisper")
    monkeypatch.setitem(registry.TASK_DEFAULTS, "t", {"audio": "w", "language": "m"})
    for entry, spec in (("w", "packaged:whisper-tiny-en"), ("m", "packaged:minilm-l6")):
        (tmp_path / "zoo" / "checkpoints" / entry).mkdir(parents=True)
        (tmp_path / "zoo" / "checkpoints" / entry / "config.json").write_text(json.dumps(
            {"backbone": {"spec": spec}, "training": recipe, "model": model, "adapter": {"sha256": entry * 64}}))

    def run(name, fold, acc, method="any2point", backbone="whisper-tiny-en", **kw):
        r = record(name, backbone=backbone, method=method, fold=fold, acc=acc, **kw)
        r.run_config, r.entry = dict(recipe), {"model": model, "adapter_sha256": "w" * 64}
        return r
    shipped_m = run("m", None, 0.9, backbone="minilm-l6")
    shipped_m.entry["adapter_sha256"] = "m" * 64
    records = {"c": [run("a0", 0, 0.8), run("a1", 1, 0.6), run("p0", 0, 0.5, "linear_probe"),
                     run("p1", 1, 0.5, "linear_probe"), run("w", None, 0.9), shipped_m],
               "pointnext": [record(f"n{k}", backbone="pointnext-sm", method="pointnext", fold=k, acc=0.6)
                             for k in (0, 1)]}
    monkeypatch.setattr(render, "_records", lambda root, c: records.get(c, []))
    monkeypatch.setattr(render, "BLOCKS", [render.CardBlock(e, ("c",), folds_only=True) for e in ("w", "m")])
    md = render.entries_comparison("t")(tmp_path)
    body = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| backbone")]
    assert [ln.split(" | ")[:6] for ln in body] == [
        ["| whisper-tiny-en", "linear probe", "2 / 2", "70.0%", "50.0%", "+20.0"],
        ["| whisper-tiny-en", "PointNeXt-S (from scratch)", "2 / 2", "70.0%", "60.0%", "+10.0"]]
    records["c"] = records["c"][-2:]  # the shipped weights' runs only: no entry has fold runs
    assert render.entries_comparison("t")(tmp_path) == "No finished runs yet."
