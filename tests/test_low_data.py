"""The low-data curve: the training-free NCM rule, and the table and plot rendered from records."""
import re

import numpy as np
import pytest

from benchmarks import low_data
from train.record import RunRecord


def test_ncm_picks_the_nearest_class_mean_by_cosine():
    train_x = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    train_y = np.array([0, 0, 1, 1])
    test_x = np.array([[5.0, 0.2], [0.3, 0.9], [1.0, 1.1]])
    # cosine: scale does not matter, direction does ([1, 1.1] is nearer class 1's mean direction)
    assert low_data.ncm_correct(train_x, train_y, test_x, np.array([0, 1, 1])).tolist() == [1, 1, 1]
    assert low_data.ncm_correct(train_x, train_y, test_x, np.array([1, 1, 0])).tolist() == [0, 1, 0]


def rec(method, backbone, seed, correct, shots=10, groups=None):
    r = RunRecord(name=f"{method}-{seed}", benchmark="kicad33", backbone=backbone, method=method, seed=seed,
                  shots=shots)
    return r.finish(dict(test_acc=float(np.mean(correct))), {}, correct, groups)


def test_curve_rows_average_draws_and_pair_with_pointnext(tmp_path):
    n = 200
    groups = [f"f{i // 4}" for i in range(n)]  # 50 families of 4 models
    pn_a = [1] * 100 + [0] * 100
    pn_b = [1] * 120 + [0] * 80
    better = [1] * 190 + [0] * 10
    records = [rec("pointnext", "pointnext-sm", 0, pn_a, groups=groups),
               rec("pointnext", "pointnext-sm", 1, pn_b, groups=groups),
               rec("ncm", "whisper-tiny-en", 0, better, groups=groups),
               rec("ncm", "whisper-tiny-en", 0, [1] * 10 + [0] * 190, shots=5, groups=groups),
               rec("pointnext", "pointnext-sm", 0, pn_a, shots=5, groups=groups)]
    rows = low_data.curves(records, "kicad33", boot=500)
    pn = rows["PointNeXt-S (from scratch)"]
    acc, lo, hi, runs, diff, starts = pn[10]
    assert runs == 2 and np.isclose(acc, 0.55) and lo < acc < hi and diff is None  # the draws averaged per model
    assert starts == 0  # from scratch: no start entry
    ncm = next(v for k, v in rows.items() if k.startswith("NCM"))
    d, dlo, dhi, n_models = ncm[10].diff
    assert n_models == n
    assert np.isclose(d, 0.95 - 0.55) and dlo > 0  # clearly ahead at k = 10
    assert ncm[5].diff[2] < 0  # 5% right against 50%: clearly behind at k = 5
    md = low_data.table(rows)
    assert "| method | k = 5 | k = 10 |" in md and "ahead" in md and "behind" in md
    png = low_data.plot(rows, tmp_path / "c.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.read_bytes() == low_data.plot(rows, tmp_path / "d.png", "t").read_bytes()  # same records, same bytes


def test_a_cell_whose_draws_started_from_different_versions_of_an_entry_says_so():
    def started(seed, sha):
        r = RunRecord(name=f"ft-{seed}", benchmark="kicad33", backbone="whisper-tiny-en", method="any2point",
                      ablation="from-entry", seed=seed, shots=10)
        return r.finish(dict(test_acc=0.5), dict(training=dict(init_from_sha256=sha)), [1, 0], None)
    pn = rec("pointnext", "pointnext-sm", 0, [1, 1])
    same = low_data.curves([pn, started(0, "a" * 64), started(1, "a" * 64)], "kicad33", boot=50)
    mixed = low_data.curves([pn, started(0, "a" * 64), started(1, "b" * 64)], "kicad33", boot=50)
    row = "Any2Point (whisper-tiny-en), from-entry"
    assert same[row][10].starts == 1 and mixed[row][10].starts == 2
    assert "versions of the start entry" not in low_data.table(same)
    assert "(2 runs from 2 versions of the start entry)" in low_data.table(mixed)


def test_val_choice_lists_each_draw_and_averages_the_draws_of_the_complete_rows():
    def run(method, seed, val, ablation=None, shots=10):
        r = RunRecord(name=f"{method}-{ablation}-{seed}", benchmark="kicad33", backbone="whisper-tiny-en",
                      method=method, ablation=ablation, seed=seed, shots=shots)
        return r.finish(dict(test_acc=0.0, val_acc=val), {}, [0], None)
    records = [run("pointnext", 0, 0.50), run("pointnext", 1, 0.40), run("any2point", 0, 0.30, "a"),
               run("any2point", 0, 0.60, "b"), run("any2point", 1, 0.70, "b"),
               run("any2point", 2, 0.99, "b", shots=5), rec("ncm", "whisper-tiny-en", 0, [1]),
               run("ncm", 0, 0.45, "other-task-entry"), run("ncm", 1, 0.55, "other-task-entry"),
               run("ncm", 0, 0.99, "own-task-entry"), run("linear_probe", 0, 0.90), run("linear_probe", 1, 0.90)]
    md = low_data.val_choice(records, "kicad33", 10).splitlines()
    assert md[0] == "| method | val, seed 0 | val, seed 1 | mean over seed 0, seed 1 | chosen |"
    # run "a" lacks seed 1: its own mean, and it waits for that draw before it can be chosen
    assert "| Any2Point (whisper-tiny-en), a | 30.0% | – | 30.0% (over seed 0 only) |  |" in md
    # k = 5 runs and NCM without val left out; "b" has the best mean of the zoo's ways over both seeds
    assert "| Any2Point (whisper-tiny-en), b | 60.0% | 70.0% | 65.0% | **yes** |" in md
    assert "| PointNeXt-S (from scratch) | 50.0% | 40.0% | 45.0% |  |" in md
    assert "| linear probe (whisper-tiny-en) | 90.0% | 90.0% | 90.0% |  |" in md  # a baseline, never chosen
    # NCM on another task's entry is a candidate like the trained ones; on this task's entry (its epoch chosen on
    # this val) or without a val accuracy it is not
    assert "| NCM on the whisper-tiny-en entry's embed() (other task) | 45.0% | 55.0% | 50.0% |  |" in md
    assert not any("own task" in line for line in md) and len(md) == 7
    # a partial row with a higher mean on its own draws is still not chosen over the complete ones
    partial = low_data.val_choice([*records, run("any2point", 0, 0.95, "c")], "kicad33", 10)
    assert "| Any2Point (whisper-tiny-en), c | 95.0% | – | 95.0% (over seed 0 only) |  |" in partial
    assert "| Any2Point (whisper-tiny-en), b | 60.0% | 70.0% | 65.0% | **yes** |" in partial
    # with no complete row, the draws every row has
    both = [run("any2point", 0, 0.5, "x"), run("any2point", 1, 0.6, "y")]
    assert "| mean over — |" in low_data.val_choice(both, "kicad33", 10)
    assert low_data.val_choice(records, "sh3d", 10) == "No finished runs yet."


def test_rows_pair_with_a_pointnext_diagnostic_run_when_asked():
    """reference="points-512": every row against PointNeXt-S's diagnostic run, which is then the row without a
    difference; PointNeXt-S's own-recipe run becomes a row compared with it, and the table names the reference."""
    groups = [f"f{i // 4}" for i in range(200)]
    pn, pn512 = rec("pointnext", "pointnext-sm", 0, [1] * 160 + [0] * 40, shots=None, groups=groups), \
        rec("pointnext", "pointnext-sm", 0, [1] * 100 + [0] * 100, shots=None, groups=groups)
    pn512.ablation, pn512.name = "points-512", "pn512"
    ours = rec("any2point", "whisper-tiny-en", 0, [1] * 130 + [0] * 70, shots=None, groups=groups)
    rows = low_data.curves([pn, pn512, ours], "kicad33", boot=300, ks=[None], reference="points-512")
    assert rows["PointNeXt-S (from scratch), points-512"][None].diff is None
    assert np.isclose(rows["Any2Point (whisper-tiny-en)"][None].diff[0], 0.15)
    assert np.isclose(rows["PointNeXt-S (from scratch)"][None].diff[0], 0.30)
    default = low_data.curves([pn, pn512, ours], "kicad33", boot=300, ks=[None])
    assert np.isclose(default["Any2Point (whisper-tiny-en)"][None].diff[0], -0.15)  # against its own recipe
    assert "vs PointNeXt-S on 512 points +15.0" in low_data.table(rows, versus="PointNeXt-S on 512 points")


def test_pointnext_is_compared_on_the_schedule_val_chooses():
    """PointNeXt-S gets the longer schedule our entries train where its val is higher over every draw its recipe
    file's runs have; a missing draw, a tie or a diagnostic run (points-512) keeps the file's schedule."""
    from benchmarks.compare_runs import pointnext_schedule
    groups = [f"f{i // 4}" for i in range(200)]

    def pn(seed, val, correct, ablation=None):
        r = rec("pointnext", "pointnext-sm", seed, correct, groups=groups)
        r.ablation, r.name, r.result["val_acc"] = ablation, f"pn-{ablation}-{seed}", val
        return r
    base = [pn(0, 0.50, [1] * 100 + [0] * 100), pn(1, 0.52, [1] * 100 + [0] * 100)]
    longer = [pn(0, 0.60, [1] * 150 + [0] * 50, "epochs-100"), pn(1, 0.58, [1] * 150 + [0] * 50, "epochs-100")]
    odd = pn(0, 0.99, [0] * 200, "points-512")
    ours = rec("any2point", "whisper-tiny-en", 0, [1] * 140 + [0] * 60, groups=groups)
    assert pointnext_schedule([*base, *longer, odd]) == "epochs-100"
    assert pointnext_schedule([*base, longer[0], odd]) is None  # the longer schedule still lacks seed 1
    assert pointnext_schedule([*base, pn(0, 0.50, [0], "epochs-100"), pn(1, 0.52, [0], "epochs-100")]) is None
    assert pointnext_schedule(longer) is None  # no run of the recipe file's schedule: nothing to weigh it against
    rows = low_data.curves([*base, *longer, odd, ours], "kicad33", boot=300)
    assert rows["PointNeXt-S (from scratch), epochs-100"][10].diff is None  # the reference now
    assert np.isclose(rows["Any2Point (whisper-tiny-en)"][10].diff[0], 0.70 - 0.75)
    assert np.isclose(rows["PointNeXt-S (from scratch)"][10].diff[0], -0.25)
    before = low_data.curves([*base, longer[0], ours], "kicad33", boot=300)
    assert np.isclose(before["Any2Point (whisper-tiny-en)"][10].diff[0], 0.70 - 0.50)


def test_suite_plans_the_curve_with_the_same_draws_for_every_method():
    from benchmarks.suite import low_data_runs
    plan = low_data_runs("kicad33", [10, 50], draws=3)
    assert len(plan) == 3 * 3 + 3  # three draws at k = 10, one at k = 50; three methods each
    by_draw = {}
    for r in plan:
        by_draw.setdefault(tuple(r.flags[-4:]), []).append(r.backbone)
    assert by_draw[("--shots", "10", "--seed", "2")] == ["whisper", "whisper", "pointnext"]
    assert ("--shots", "50", "--seed", "1") not in by_draw
    assert [r.flags[:2] for r in plan if r.name.startswith("linear-probe")][0] == ["--variant", "linear_probe"]


def test_suite_curve_with_a_recipe_change_labels_it_and_spares_pointnext():
    from benchmarks.suite import METHOD_ABLATIONS, low_data_runs
    plan = {r.name: r.flags for r in low_data_runs("sh3d", [10], draws=1, recipe_change="pointpn-cpu")}
    assert set(plan) == {"any2point-pointpn-cpu-whisper-sh3d-k10-seed0", "linear-probe-pointpn-cpu-whisper-sh3d-k10-seed0",
                         "pointnext-sh3d-k10-seed0"}
    a2p = plan["any2point-pointpn-cpu-whisper-sh3d-k10-seed0"]
    assert a2p[a2p.index("--ablation") + 1] == "pointpn-cpu"
    assert [a2p[i + 1] for i, x in enumerate(a2p) if x == "--set"] == METHOD_ABLATIONS["pointpn-cpu"][2]
    assert "--ablation" in plan["linear-probe-pointpn-cpu-whisper-sh3d-k10-seed0"]
    assert plan["pointnext-sh3d-k10-seed0"] == ["--shots", "10", "--seed", "0"]


def test_suite_plans_pointnext_on_the_longer_schedule_as_its_records_name_it():
    # the hand-run PointNeXt-S 100-epoch records (pointnext-epochs100-...) are what the suite skips when it plans them
    from benchmarks.compare_runs import POINTNEXT_SCHEDULES
    from benchmarks.suite import low_data_runs, runs
    from train.run import parse_args, resolve
    assert POINTNEXT_SCHEDULES == (None, "epochs-100")
    low = {r.name: r.flags for r in low_data_runs("kicad33", [5], draws=1, pointnext_schedule="epochs-100")}
    flags = low["pointnext-epochs100-kicad33-k5-seed0"]
    assert flags[flags.index("--ablation") + 1] == "epochs-100"
    cfg = resolve(parse_args(["--config", "train/configs/kicad33_pointnext.toml", *flags]))
    assert (cfg.epochs, cfg.warmup_epochs, cfg.shots, cfg.seed) == (100, 5, 5, 0)
    assert "--ablation" not in low["any2point-whisper-kicad33-k5-seed0"]  # Any2Point keeps its recipe
    assert "pointnext-kicad33-k5-seed0" in {r.name for r in low_data_runs("kicad33", [5], draws=1)}
    full = {r.name: r.flags for r in runs(None, benchmark="kicad33", pointnext=True, pointnext_schedule="epochs-100")}
    assert full["pointnext-kicad33-epochs100"] == flags[4:]


def test_suite_curve_from_an_entry_trains_the_linear_probe_without_the_start():
    # train.run refuses --init-from for a linear probe (no adapters to load): the probe keeps the rest of the change
    from benchmarks.suite import METHOD_ABLATIONS, ablation_text, low_data_runs
    key = "from-sh3d-entry-e100-lr1e-3"
    plan = {r.name: r.flags for r in low_data_runs("kicad33", [10], draws=1, recipe_change=key)}
    probe = plan[f"linear-probe-{key}-no-start-whisper-kicad33-k10-seed0"]
    sets = [probe[i + 1] for i, x in enumerate(probe) if x == "--set"]
    assert sets == [kv for kv in METHOD_ABLATIONS[key][2] if not kv.startswith("init_from=")] and "lr=1e-3" in sets
    assert probe[probe.index("--ablation") + 1] == f"{key}-no-start"
    a2p = plan[f"any2point-{key}-whisper-kicad33-k10-seed0"]
    assert "init_from=any2point-audio-whisper-sh3d" in a2p
    assert ablation_text(f"{key}-no-start").endswith("without the start from an entry (a linear probe)")
    # another backbone starts from the other task's entry of that backbone, never from Whisper's
    dino = {r.name: r.flags for r in low_data_runs("kicad33", [10], 1, "dinov2s", key)}
    assert "init_from=any2point-vision-dinov2s-sh3d" in dino[f"any2point-{key}-dinov2s-kicad33-k10-seed0"]
    sh3d = {r.name: r.flags for r in low_data_runs("sh3d", [10], 1, "minilm", "from-kicad33-entry-e100")}
    assert "init_from=any2point-language-minilm-kicad33" in sh3d["any2point-from-kicad33-entry-e100-minilm-sh3d-k10-seed0"]


@pytest.mark.parametrize("backbone", ["whisper", "minilm", "dinov2s"])
def test_the_as_trained_start_keeps_each_kicad33_entrys_structure(backbone):
    """The furniture runs from the kicad33 entry "as trained" take each entry's own tokenizer, points and tokens; for
    Whisper that is the change that spells its entry's structure out."""
    from benchmarks.suite import BACKBONES, ablation_flags
    from train.run import parse_args, read_start, resolve

    def run_config(key):  # the flags the suite gives the run
        flags = ablation_flags(key, backbone)
        return resolve(parse_args(["--config", f"train/configs/sh3d_{backbone}.toml", "--shots", "10", *flags]))
    cfg = run_config("from-kicad33-entry-as-trained-e100-lr1e-3")
    entry = read_start(f"any2point-{BACKBONES[backbone]}-{backbone}-kicad33")[0]
    assert cfg.model.to_dict() == entry["model"] and cfg.points == entry["model"]["num_points"]
    assert (cfg.epochs, cfg.warmup_epochs, cfg.lr) == (100, 10, 1e-3)
    spelled = run_config("from-kicad33-entry-e100-lr1e-3")
    if backbone == "whisper":
        assert spelled.model == cfg.model and spelled.points == cfg.points
    else:  # the spelled-out change resizes the other entries (DINOv2) or does not fit them at all (MiniLM)
        assert (spelled.model, spelled.points) != (cfg.model, cfg.points)


def test_suite_only_takes_every_fold_of_a_name(capsys):
    from benchmarks.suite import main
    main(["--benchmark", "sh3d", "--no-ablations", "--folds", "0", "3", "--only", "baseline-linear-probe-whisper",
          "any2point-audio-whisper-sh3d-fold3", "--runs-dir", "runs/test-only-folds", "--dry-run"])
    planned = [ln.split(":")[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("[run]")]
    assert sorted(planned) == ["[run] any2point-audio-whisper-sh3d-fold3", "[run] baseline-linear-probe-whisper-fold0",
                               "[run] baseline-linear-probe-whisper-fold3"]


def test_ncm_on_the_folds_draws_what_train_run_draws(monkeypatch, tmp_path):
    # train.run --shots k --seed s --fold f draws few_shot(fold f's train split, k, s): the NCM record of that
    # (k, seed, fold) must see the same models, so each fold's draw is seeded by the seed, never by the fold
    import types

    import train.data
    import train.data.built
    import zoo
    import zoo.registry

    class Split:
        def __init__(self, fold, split):
            rng = np.random.default_rng(100 * fold + len(split))
            self.points = rng.normal(size=(12, 4, 3)).astype(np.float32)
            self.targets = np.arange(12) % 2
            self.groups = [f"g{i}" for i in range(12)]

        def __len__(self):
            return len(self.points)

    calls = []

    def few_shot(ds, k, seed):
        calls.append(seed)
        return ds

    monkeypatch.setattr(train.data, "DATASETS", {"sh3d": lambda root, split, fold: Split(fold, split)}, raising=False)
    monkeypatch.setattr(train.data.built, "few_shot", few_shot)
    monkeypatch.setattr(zoo, "load_model", lambda name: types.SimpleNamespace(embed=lambda p: p.mean(0)))
    monkeypatch.setattr(zoo.registry, "get_entry",
                        lambda name: types.SimpleNamespace(dataset="kicad33", backbone="packaged:whisper-tiny-en"))
    written = low_data.ncm_records("sh3d", ["e"], data_root=tmp_path, out=tmp_path)
    assert len(written) == 5 * 2 and calls == [0] * 10  # five folds, k = 5 and 10, one draw (seed 0) each
    records = [RunRecord.load(p) for p in written]
    assert {(r.seed, r.fold) for r in records} == {(0, f) for f in range(5)}
    # each record carries NCM's val accuracy on its fold's val split, from the same drawn models as its test
    for r in records:
        few, val = Split(r.fold, "train"), Split(r.fold, "val")
        expected = low_data.ncm_correct(few.points.mean(1), few.targets, val.points.mean(1), val.targets).mean()
        assert np.isclose(r.result["val_acc"], expected)


def test_every_method_ablation_resolves_for_its_backbone():
    # each consumer (the suite, method-cost) takes a change's settings through ablation_sets, which fills in the
    # entry a change starts from; unfilled, train.run would look for an entry named "any2point-{modality}-..."
    from benchmarks.suite import METHOD_ABLATIONS, ablation_flags, recipe
    from train.run import parse_args, resolve
    for key, (short, _, _) in METHOD_ABLATIONS.items():
        cfg = resolve(parse_args(["--config", str(recipe("kicad33", short)), *ablation_flags(key, short)]))
        assert cfg.ablation == key and "{" not in str(cfg.init_from)
        start = re.search(r"from-(sh3d|kicad33)-entry", key)  # the key names the entry a change starts from
        assert cfg.init_from == (f"any2point-audio-whisper-{start[1]}" if start else None)


def test_method_cost_builds_a_change_that_starts_from_an_entry(monkeypatch, tmp_path):
    from benchmarks import method_cost
    seen = {}

    def cost(benchmark, short, sets, repeats):
        seen[short, tuple(sets)] = benchmark
        return dict(backbone=short, ms_per_cloud=1.0, bare_ms=1.0, end_to_end_over_bare=1.0, train_clouds_per_s=1.0,
                    trainable=1)
    monkeypatch.setattr(method_cost, "cost", cost)
    method_cost.main(["--only", "from-sh3d-entry-e100", "--out", str(tmp_path / "c.json")])
    starts = [kv for _, sets in seen for kv in sets if kv.startswith("init_from=")]
    assert starts == ["init_from=any2point-audio-whisper-sh3d"]
