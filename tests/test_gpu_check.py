"""The GPU check (benchmarks/gpu.py) on a CPU: --max-steps, the offline paper-size architectures, and the whole
check in --smoke mode (the same path a lent GPU runs, with tiny backbones)."""
import csv
import json

import pytest
import torch

from benchmarks import gpu
from tests.tiny import write_scanobjectnn
from train import run

TINY = ["--dataset", "scanobjectnn", "--backbone", "scratch:2d", "--batch-size", "4", "--points", "128",
        "--votes", "1", "--limit-batches", "2", "--epochs", "5"]


def log_epochs(out):
    with open(out / "log.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_max_steps_stops_across_epochs_then_resumes_to_a_new_cap(tmp_path):
    data, out = write_scanobjectnn(tmp_path / "sonn"), tmp_path / "run"
    result = run.main([*TINY, "--data-root", str(data), "--output-dir", str(out), "--max-steps", "3"])
    # two steps per epoch: the third step is the first of epoch 2, which still validates, checkpoints and logs
    assert result["steps"] == 3 and result["max_steps"] == 3
    assert log_epochs(out) == [1, 2]
    assert json.loads((out / "result.json").read_text())["steps"] == 3
    training = json.loads((out / "entry/config.json").read_text())["training"]
    assert training["max_steps"] == 3 and training["steps"] == 3

    result = run.main([*TINY, "--data-root", str(data), "--output-dir", str(out), "--max-steps", "6", "--resume"])
    # the resume starts after the last whole epoch (2, cut short at one step): epoch 3 takes two steps, 4 the last
    assert result["steps"] == 6 and log_epochs(out) == [1, 2, 3, 4]


def test_max_steps_below_one_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="max_steps must be at least 1, got 0"):
        run.main([*TINY, "--data-root", str(tmp_path), "--max-steps", "0"])


def test_paper_backbones_build_offline_at_full_size(monkeypatch):
    import transformers

    from core.backbones import wrap
    from zoo.specs import build_module

    def no_hub(*a, **k):
        raise AssertionError("reached for the Hub")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    sizes = {"timm:vit_base_patch14_dinov2.lvd142m": (37, 37, 768),  # 518 px / 14
             "hf-text:openai/clip-vit-large-patch14": (77, 768),
             "hf-audio:MIT/ast-finetuned-audioset-10-10-0.4593": (12, 101, 768)}  # 128 mel bins x 1024 frames
    for spec, table in sizes.items():
        with torch.device("meta"):  # shapes only: no memory, no init time
            backbone = wrap(build_module(spec, pretrained=False)[0])
        assert tuple(backbone.pos_table().shape) == table, spec
        assert backbone.width == 768 and len(backbone.blocks) == 12, spec


def test_training_augmentation_keeps_fp32_under_bf16_autocast():
    """The trainer augments inside its autocast; a bf16 rotation would round every training cloud (GPU-only)."""
    from train.augment import augment
    x = torch.randn(2, 64, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = augment(x, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and torch.equal(y, augment(x, torch.Generator().manual_seed(0)))


def test_synthetic_data_loads_as_scanobjectnn(tmp_path):
    from train.data.scanobjectnn import ScanObjectNN
    root = gpu.write_synthetic_scanobjectnn(tmp_path / "sonn", train=8, test=4)
    train = ScanObjectNN(root, "train", num_points=2048)
    assert len(train) == 8 and sorted(set(train.targets.tolist())) == [0, 1, 2, 3]
    assert train[0][0].shape == (2048, 3) and len(ScanObjectNN(root, "test")) == 4


def test_device_memory_watch_keeps_the_peak_above_the_starting_use(monkeypatch):
    import time
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    readings = iter([1000.0, 1200.0, 3500.0, 1500.0])  # MiB in use: before, then three samples; then it stays

    class Fake(gpu.DeviceMemoryWatch):
        def _used(self):
            return next(readings, 1100.0)
    with Fake(every=0.005) as watch:
        time.sleep(0.1)
    assert watch.peak_mb == 2500
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with gpu.DeviceMemoryWatch() as watch:
        pass
    assert watch.peak_mb is None


def test_loss_trend_compares_the_first_and_last_thirds():
    assert gpu.loss_falls([2.0, 1.9, 2.1, 1.0, 1.2, 0.9]) is True
    assert gpu.loss_falls([1.0, 1.0, 1.5, 2.0]) is False
    assert gpu.loss_falls([1.0]) is None


def test_smoke_check_runs_every_recipe_and_writes_one_record(tmp_path):
    entry = "any2point-language-minilm-sh3d"
    # bf16 autocast on the CPU: the mixed-precision path a GPU takes by default (its dtype bugs show here too)
    record, path, ok = gpu.check(["--smoke", "--steps", "4", "--entries", entry, "--repeats", "2", "--processes", "2",
                                 "--mixed-precision", "bf16", "--out", str(tmp_path)])
    assert ok, record
    assert json.loads(path.read_text()) == record and path.parent == tmp_path and path.name.startswith("20")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no failure logs
    assert record["smoke"] and record["device"]["type"] == "cpu" and record["settings"]["steps"] == 4
    assert record["settings"]["mixed_precision"] == "bf16"
    assert set(record["recipes"]) == set(gpu.RECIPES)
    for name, row in record["recipes"].items():
        assert row["ok"] and row["steps"] == 4 and row["epochs_run"] == 2, (name, row)
        assert row["backbone"] == gpu.RECIPES[name][1] and row["batch_size"] == 8
        assert row["step_s"] > 0 and row["clouds_per_s"] > 0 and row["peak_mb"] > 0
        assert 0 < row["trainable_parameters"] < row["total_parameters"]
        assert len(row["losses"]) == 2 and isinstance(row["loss_falls"], bool)
    assert record["memory_goal"]["met"] == {name: None for name in gpu.RECIPES}  # a CPU run measures no goal
    timing = record["entries"][entry]
    assert "skipped" in timing or timing["cpu_ms"] > 0 and timing["device_ms"] == timing["cpu_ms"]
    multi = record["multi_gpu"]
    assert multi["ok"] and multi["processes"] == 2 and multi["every_process_trained"], multi
    assert multi["steps"] == 4 and multi["clouds"] == multi["expected_clouds"] == 2 * 8 * 4


def test_memory_table_gives_a_failed_recipe_one_row_with_its_error(tmp_path):
    from benchmarks.render import RESULTS, gpu_records
    folder = tmp_path / RESULTS / "gpu"
    folder.mkdir(parents=True)
    error = "exit 1:   File \"x.py\", line 1 |     a | b | NotImplementedError: not implemented for 'BFloat16'"
    ok = dict(ok=True, device_used_peak_mb=9000, peak_mb=7000.4, step_s=0.25, clouds_per_s=128.0)
    (folder / "2026-01-01-gpu.json").write_text(json.dumps(dict(
        device=dict(name="GPU X", torch="2.11"), memory_goal=dict(met=dict(clipl=True)),
        recipes=dict(dinov2b=dict(ok=False, error=error), clipl=ok))))
    header, rule, failed, passed = gpu_records(tmp_path).splitlines()
    cells = lambda row: [c.strip() for c in row.replace("\\|", "").split("|")[1:-1]]  # noqa: E731
    assert len(cells(failed)) == len(cells(header)) == len(cells(passed)) == 9
    assert cells(failed)[:5] == ["2026-01-01-gpu.json", "dinov2b", "GPU X", "2.11",
                                 "failed: NotImplementedError: not implemented for 'BFloat16'"]
    assert cells(passed)[4:] == ["9000", "7000", "0.250", "128.0", "True"]
