"""Train Any2Point on a point-cloud dataset and export a zoo entry (adapter-only artifact + model card).

    python -m train.run --config train/configs/sh3d_dinov2s.toml
    python -m train.run --dataset folder --data-root my_meshes/ --backbone packaged:minilm-l6 --epochs 30
    accelerate launch -m train.run --config train/configs/scanobjectnn_dinov2b.toml   # one or many GPUs

(`python train/run.py ...` works too once the project is installed: `pip install -e .`.)
Flags override the config file; the config file overrides the defaults below. A run writes into --output-dir:
last.pt (resume with --resume), best.pt, log.csv, tb/ (TensorBoard), result.json, entry/ (the zoo entry) and its run
record (train/record.py; --record puts it elsewhere, e.g. benchmarks/results/<campaign>/), written when the run
starts and completed at the end.
"""
import argparse
import dataclasses
import functools
import json
import sys
import tomllib
from pathlib import Path

import torch

from core.config import PRESETS, Any2PointConfig, ConfigError, check_keys, check_value, type_hints

BASELINES_3D = ("pointnext",)  # 3D-native networks trained whole, from scratch (zoo/pointnext.py), not presets
VARIANTS = (*PRESETS, *BASELINES_3D)


@dataclasses.dataclass
class RunConfig:
    dataset: str = "sh3d"  # a row of train.data.TABLE: sh3d | kicad33 | scanobjectnn | modelnet40 | folder | ...
    data_root: str = "data/sh3d"
    fold: int | None = None  # sh3d / kicad33: cross-validation round k (test fold k, val fold k+1); None: default split
    variant_data: str = "PB_T50_RS"  # ScanObjectNN variant, or ModelNet40 format (auto | resampled | hdf5)
    points: int = 1024
    backbone: str = "packaged:dinov2-s14"
    revision: str | None = None
    variant: str = "any2point"  # a key of core.config.PRESETS (any2point | linear_probe | ...) or pointnext
    model: Any2PointConfig = dataclasses.field(default_factory=Any2PointConfig)  # the [model] table
    epochs: int = 300
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    decay_all: bool = True  # also decay biases, norm weights and the cls token (False: the official recipe)
    resample: bool = False  # official: each step FPS to 1.17 x points then a random `points`; test on an FPS `points`
    rotate: bool = True  # training augmentation: random rotation about the up axis (ModelNet40 recipe: off)
    warmup_epochs: int = 10
    grad_clip: float = 10.0
    seed: int = 0
    shots: int | None = None  # low-data runs: k training models per class, distinct families, drawn by seed
    init_from: str | None = None  # a trained zoo entry (name, folder, Hub repo) whose tokenizer/adapters/head start
    ablation: str | None = None  # what this run changes from its recipe (a label for its record; the suite sets it)
    votes: int = 10
    limit_batches: int | None = None
    max_steps: int | None = None  # stop after this many optimiser steps (smoke and timing runs; schedule unchanged)
    mixed_precision: str = "auto"  # auto (bf16 on GPU, off on CPU) | no | fp16 | bf16
    output_dir: str = "runs/sh3d-dinov2s"
    name: str | None = None  # zoo entry name; default from output dir
    push_to_hub: str | None = None


def load_config(path):
    """TOML: flat RunConfig keys and an optional [model] table of Any2PointConfig settings -> a dict of checked
    values (the [model] table already an Any2PointConfig). Any unknown key or wrong type exits with one line.
    A run record (benchmarks/results/<campaign>/<name>.json) gives the settings its run trained with."""
    if is_record(path):
        return record_config(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"error: config file not found: {path} (see train/configs/ for recipes)")
    except tomllib.TOMLDecodeError as err:
        raise SystemExit(f"error: {path} is not valid TOML: {err}")
    try:
        return check_run_config(raw, where=str(path))
    except ConfigError as err:
        raise SystemExit(f"error: {path}: {err}")


def is_record(path):
    """Whether --config names a run record (JSON) rather than a TOML recipe."""
    return Path(path).suffix == ".json"


def record_config(path):
    """A finished run's record -> its exact RunConfig settings, so any table row reruns as it ran: the suite's
    ablation keys change the benchmark's recipe of today, and the recipes move on (more epochs, another tokenizer).
    Its output goes to runs/rerun/<name> unless a flag says otherwise; a start entry retrained since is said."""
    from train.record import RecordError, RunRecord
    try:
        record = RunRecord.load(path)
    except FileNotFoundError:
        raise SystemExit(f"error: run record not found: {path}")
    except RecordError as err:
        raise SystemExit(f"error: {err}")
    if not record.run_config:
        raise SystemExit(f"error: {path}: the record keeps no run settings")
    raw = {k: v for k, v in record.run_config.items() if v is not None and k not in ("output_dir", "push_to_hub")}
    raw["output_dir"] = f"runs/rerun/{record.name}"
    start, pinned = raw.get("init_from"), (record.entry or {}).get("init_from_sha256")
    if start and pinned:
        try:
            now = read_start(start)[0]["adapter"]["sha256"]
        except SystemExit:  # gone: resolve says so, unless a flag names another start
            now = pinned
        if now != pinned:
            print(f"warning: {path} started from {start} with adapter sha256 {pinned[:12]}…, which has been retrained "
                  f"since (now {now[:12]}…): pass --init-from the earlier version's folder to rerun it exactly",
                  file=sys.stderr)
    try:
        return check_run_config(raw, where=str(path))
    except ConfigError as err:
        raise SystemExit(f"error: {path}: {err}")


def check_run_config(raw, *, where="config"):
    """{key: value} -> the same, every key known and every value of its type; [model] -> Any2PointConfig."""
    check_keys(raw, [f.name for f in dataclasses.fields(RunConfig)])
    hints, out = type_hints(RunConfig), {}
    for key, value in raw.items():
        if key == "model":
            out[key] = value if isinstance(value, Any2PointConfig) else \
                Any2PointConfig.from_dict(value, where="[model]")
        else:
            out[key] = check_value(key, value, hints[key])
    if out.get("variant", "any2point") not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {out['variant']!r}")
    if out.get("shots") is not None and out["shots"] < 1:
        raise ConfigError(f"shots must be at least 1, got {out['shots']}")
    if out.get("max_steps") is not None and out["max_steps"] < 1:
        raise ConfigError(f"max_steps must be at least 1, got {out['max_steps']}")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m train.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML recipe (train/configs/*.toml), or a run record "
                   "(benchmarks/results/<campaign>/<name>.json) to rerun as it ran; flags below override it")
    from train.data import TABLE
    p.add_argument("--dataset", choices=list(TABLE), help="dataset kind (default sh3d); " +
                   "; ".join(f"{name}: {spec.help}" for name, spec in TABLE.items()))
    p.add_argument("--fold", type=int, help="sh3d / kicad33: 5-fold cross-validation round 0..4 (test = fold k, "
                   "val = fold k+1, train = the rest); default: the benchmark's fixed split")
    p.add_argument("--data-root", help="dataset folder (ScanObjectNN: containing main_split/; ModelNet40: containing "
                   "modelnet40_normal_resampled/ or modelnet40_ply_hdf5_2048/; folder: one sub-folder per class; "
                   "sh3d: the output of python -m train.data.sh3d)")
    p.add_argument("--variant-data", help="ScanObjectNN variant (PB_T50_RS, OBJ_BG, OBJ_ONLY) or ModelNet40 format")
    p.add_argument("--backbone", help="backbone spec: packaged:dinov2-s14 | packaged:minilm-l6 | "
                   "packaged:whisper-tiny-en | timm:<name> | hf-text:<repo> | hf-audio:<repo>")
    p.add_argument("--revision", help="40-hex Hub commit of the backbone (Hub specs)")
    p.add_argument("--variant", choices=VARIANTS, help="; ".join(f"{k}: {v.help}" for k, v in PRESETS.items()) +
                   "; pointnext: PointNeXt-S from torch-pointcloud, the 3D-native baseline, trained whole from scratch "
                   "(its standard input: 1,024 points, xyz + height)")
    p.add_argument("--init-from", metavar="ENTRY", help="fine-tune a trained zoo entry (name, entry folder or "
                   "Hub repo) on this data: its backbone, structure and trained weights start the run, the classifier "
                   "layer starts fresh when the classes differ (flags and --set still change the recipe; the "
                   "Point-PN weights do not depend on the point or centre counts, so e.g. --points 1024 --set "
                   "model.pointpn_stages=[512,128] feeds a 512-point entry twice the points)")
    p.add_argument("--shots", type=int, help="low-data runs: keep k training models per class, each from a different "
                   "family (kicad33) where the class has k, drawn by --seed; val and test stay whole")
    p.add_argument("--pe", choices=["auto", "none", "1d", "2d"], help="ablation: positional embedding projection")
    p.add_argument("--no-guided", action="store_true", help="ablation: turn the any-to-3D guided adapter off")
    p.add_argument("--epochs", type=int, help="number of epochs (paper: 300)")
    p.add_argument("--batch-size", type=int, help="clouds per step per process (paper: 32)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (paper: 5e-4)")
    p.add_argument("--points", type=int, help="points per cloud (1024 or 2048)")
    p.add_argument("--seed", type=int, help="seed for init, data order and augmentation")
    p.add_argument("--votes", type=int, help="test-time voting passes (1 = off; paper: 10)")
    p.add_argument("--limit-batches", type=int, help="at most this many batches per epoch (quick runs)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in all, then select on val, "
                   "test once and write the result and the entry as usual (smoke and timing runs; the learning-rate "
                   "schedule stays the one of --epochs)")
    p.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"])
    p.add_argument("--output-dir", help="where checkpoints, logs and the entry go")
    p.add_argument("--name", help="zoo entry name (default: the output dir's name)")
    p.add_argument("--resume", action="store_true", help="continue from --output-dir/last.pt")
    p.add_argument("--ablation", help="label the run's record with the ablation it is (what it changes from its "
                   "recipe; benchmarks.suite's keys)")
    p.add_argument("--record", help="where the run's record goes (default: --output-dir/record.json)")
    p.add_argument("--push-to-hub", metavar="REPO", help="push the entry to this Hub repo at the end")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override any recipe key (model settings as model.KEY) with a TOML value, a bare word being a "
                   "string: --set resample=true --set model.tokenizer=pointpn --set model.pointpn_stages=[256,128]. "
                   "Repeatable; applied after the config file and the other flags")
    return p.parse_args(argv)


def parse_setting(text):
    """'KEY=VALUE' -> (KEY, value): VALUE read as a TOML value, or as a plain string when it is not one."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"error: --set needs KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def resolve(args):
    """Defaults < the config file < the --init-from entry's structure < flags -> a checked RunConfig (nothing is
    built yet)."""
    cfg = load_config(args.config) if args.config else {}
    flags = {key: getattr(args, key) for key in (
        "dataset", "data_root", "fold", "variant_data", "backbone", "revision", "variant", "epochs", "batch_size", "lr",
        "points", "seed", "shots", "votes", "limit_batches", "max_steps", "mixed_precision", "output_dir", "name",
        "push_to_hub", "ablation", "init_from") if getattr(args, key, None) is not None}
    model_keys = {}
    for text in getattr(args, "settings", []):
        key, value = parse_setting(text)
        if key.startswith("model."):
            model_keys[key.removeprefix("model.")] = value
        else:
            flags[key] = value
    if args.pe:
        model_keys["pe"] = args.pe
    if args.no_guided:
        model_keys["guided"] = False
    model = cfg.get("model", Any2PointConfig())
    init = flags.get("init_from", cfg.get("init_from"))
    try:
        if init:
            entry = read_start(init)[0]
            if not (args.config and is_record(args.config)):  # a run record already holds the structure it trained
                model = Any2PointConfig.from_dict(entry["model"], where=f"entry {init!r} model")
                cfg.update(backbone=entry["backbone"]["spec"], revision=entry["backbone"].get("revision"),
                           points=model.num_points)
            if flags.get("backbone", entry["backbone"]["spec"]) != entry["backbone"]["spec"]:
                raise ConfigError(f"--init-from {init} was trained on backbone {entry['backbone']['spec']}, not "
                                  f"{flags['backbone']}: drop --backbone or start from an entry of that backbone")
            if flags.get("variant", cfg.get("variant", "any2point")) != "any2point":
                raise ConfigError("--init-from starts an Any2Point run (variant any2point): the baselines change the "
                                  "trained structure")
        cfg.update(flags)
        if model_keys:
            model = model.replace(**model_keys)
        return RunConfig(**check_run_config({**cfg, "model": model}, where="flags"))
    except ConfigError as err:
        raise SystemExit(f"error: {err}")


@functools.lru_cache(maxsize=2)
def read_start(location):
    """--init-from: a trained zoo entry (registry name, entry folder, or Hub repo) -> (its config, its trainable
    state), read and verified once per process (resolve takes its structure, build_model its weights). Exits with
    one line when there is none."""
    from zoo import hub
    from zoo.registry import BY_NAME, artifact_location
    revision = None
    if location in BY_NAME:
        found = artifact_location(BY_NAME[location])
        if found is None:
            raise SystemExit(f"error: --init-from {location}: the entry is a recipe, not a trained model")
        location, revision = found
    try:
        config, state, _ = hub.load_entry(location, revision=revision)
    except (hub.EntryError, OSError) as err:
        raise SystemExit(f"error: --init-from {location}: {err}")
    return config, state


def start_from(model, state, labels):
    """Load an entry's trained tokenizer, projection, adapters and head body into a fresh model; the head's last
    layer starts fresh unless the entry has the same classes in the same order. -> the keys left fresh."""
    own = model.trainable_state_dict()
    last = f"head.{len(model.head) - 1}."
    fresh = [] if list(labels) == list(model.labels) else sorted(k for k in own if k.startswith(last))
    try:  # the model's own check of names and shapes, the fresh layer kept as initialised
        model.load_trainable_state_dict({**state, **{k: own[k] for k in fresh}})
    except ValueError as err:
        raise SystemExit(f"error: --init-from: the entry's weights do not fit this model, whose structure --set or "
                         f"the flags changed ({err})")
    return fresh


def run_config_dict(cfg):
    """The run's JSON record: RunConfig fields with the model settings as their saved dict."""
    return {**dataclasses.asdict(cfg), "model": cfg.model.to_dict()}


def build_datasets(cfg):
    """-> {"train", "val", "test"} datasets and the class names. Datasets without a val split get one carved
    deterministically (10% of train, fixed seed) so test never selects a checkpoint."""
    from train.augment import RESAMPLE_FROM
    from train.data import DatasetError, dataset_spec
    try:
        spec, _ = dataset_spec(cfg.dataset)
    except KeyError as err:
        raise SystemExit(f"error: {err.args[0]}")
    points = RESAMPLE_FROM if cfg.resample else cfg.points  # resampling runs load the whole cloud
    try:
        def make(split):
            return spec.load(cfg.data_root, split, num_points=points, fold=cfg.fold, variant=cfg.variant_data)
        train, test = make("train"), make("test")
        val = make("val") if spec.val == "split" else None
    except (DatasetError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if val is None:
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(12345)).tolist()
        n_val = max(1, len(train) // 10)
        labels = train.labels
        val, train = torch.utils.data.Subset(train, perm[:n_val]), torch.utils.data.Subset(train, perm[n_val:])
        val.labels = train.labels = labels
    return dict(train=train, val=val, test=test), list(train.labels)


def build_model(cfg, labels):
    """-> (Any2Point, backbone info). Baselines and controls are presets (core.config.PRESETS) over the recipe."""
    if cfg.variant == "pointnext":
        from zoo.pointnext import ARCHS, PointNeXt
        torch.manual_seed(cfg.seed)
        info = dict(spec=f"torch-pointcloud:{ARCHS[0]}", revision=None, sha256=None, modality="3d",
                    compared_with=cfg.backbone)
        return PointNeXt(len(labels), labels=labels, arch=ARCHS[0]), info
    from core import Any2Point
    from zoo import build_backbone
    preset = PRESETS[cfg.variant]
    config = preset.apply(cfg.model.replace(num_points=cfg.points))
    # the controls replace the weights anyway: build the architecture only (no download, works offline)
    backbone, info = build_backbone(cfg.backbone, cfg.revision, pretrained=preset.backbone == "pretrained")
    if preset.backbone == "scratch":  # a small random transformer of the same positional kind, trained whole
        spec = f"scratch:{backbone.pos_kind}"
        modality, backbone = backbone.modality, build_backbone(spec)[0]
        info = dict(spec=spec, revision=None, sha256=None, modality=modality, compared_with=info.get("spec"))
    elif preset.backbone == "random":
        from zoo.registry import randomized
        info = randomized(backbone, info, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = Any2Point(backbone, len(labels), labels=labels, config=config)
    if cfg.init_from:
        entry, state = read_start(cfg.init_from)
        fresh = start_from(model, state, entry["labels"])
        print(f"started from {cfg.init_from} ({entry['name']}): its trained weights loaded, "
              f"{'the classifier layer fresh' if fresh else 'the classifier too (same classes)'}")
    return model, info


def inherit_credits(extra, start):
    """A fine-tuned entry's weights carry what its start entry learnt from that entry's data: its card credits that
    data too, and takes the start's licence where its own data sets none (a share-alike licence binds what is
    derived from it)."""
    card = read_start(start)[0].get("card", {})
    extra = dict(extra)
    if card.get("data_licence"):
        extra["data_licence"] = "; ".join([*filter(None, [extra.get("data_licence")]),
                                          f"started from {start}, whose data: {card['data_licence']}"])
    if card.get("attribution"):
        extra["attribution"] = [*extra.get("attribution", []), *(f"{a}, through {start}" for a in card["attribution"])]
    if card.get("license") and not extra.get("license"):
        extra["license"] = card["license"]
    return extra


def export_entry(cfg, model, info, result, datasets, out_dir):
    """Write the zoo entry into out_dir/entry through the zoo's one save function."""
    from zoo.registry import save_model
    training = dict(dataset=cfg.dataset, points=cfg.points, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, decay_all=cfg.decay_all,
                    resample=cfg.resample, rotate=cfg.rotate,
                    warmup_epochs=cfg.warmup_epochs, grad_clip=cfg.grad_clip, seed=cfg.seed, votes=cfg.votes,
                    limit_batches=cfg.limit_batches, device=result["device"],
                    train_seconds=round(result["train_seconds"], 1), clouds_per_s=round(result["clouds_per_s"], 2),
                    peak_mb=round(result["peak_mb"]), sizes={k: len(v) for k, v in datasets.items()})
    from train.data import dataset_spec
    spec = dataset_spec(cfg.dataset)[0]
    if spec.variant_kw:
        training["variant_data"] = cfg.variant_data
    if cfg.fold is not None:
        training["fold"] = cfg.fold
    if cfg.init_from:  # fine-tuned: the entry it started from is part of its provenance; a name alone is not (an
        # entry is retrained under the same name), its adapter's sha256 is
        training["init_from"] = cfg.init_from
        training["init_from_sha256"] = read_start(cfg.init_from)[0]["adapter"]["sha256"]
    if cfg.max_steps is not None:  # a capped run: say how far it got
        training.update(max_steps=cfg.max_steps, steps=result["steps"])
    metrics = {k: result[k] for k in ("test_acc", "test_mean_class_acc", "test_acc_vote",
                                      "test_mean_class_acc_vote", "val_acc", "best_epoch")}
    extra = {}
    if spec.data_licence:
        extra["data_licence"] = spec.data_licence
    if spec.weights_license:
        extra["license"] = spec.weights_license
    if info.get("random_init") is not None:
        extra["description"] = (f"A control run, not a model to use: Any2Point on the architecture of "
                                f"`{info['spec']}` with random weights (seed {info['random_init']}), frozen.")
    if any(hasattr(ds, "manifest") for ds in datasets.values()):  # the built benchmarks: credit every model used
        credits = {}
        for ds in datasets.values():
            for row in getattr(ds, "manifest", []):
                who = row.get("creator") or row.get("copyright") or "unknown"
                key = (who, row.get("licence") or row.get("license") or "not stated")
                credits[key] = credits.get(key, 0) + 1
        extra["attribution"] = [f"{n} model{'s' * (n > 1)} by {c} ({lic})" for (c, lic), n in sorted(credits.items())]
    if cfg.init_from:
        extra = inherit_credits(extra, cfg.init_from)
    if cfg.variant == "pointnext":
        from zoo.pointnext import save_pointnext
        return save_pointnext(model, Path(out_dir) / "entry", name=cfg.name or Path(cfg.output_dir).name,
                              training=training, metrics=metrics, card_extra=extra)
    return save_model(model, Path(out_dir) / "entry", name=cfg.name or Path(cfg.output_dir).name, info=info,
                      variant=cfg.variant, training=training, metrics=metrics, card_extra=extra,
                      up_prior=spec.up_prior)


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve(args)  # the whole recipe is checked here, before any dataset or backbone is built
    from accelerate import Accelerator
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    acc = Accelerator(mixed_precision=mp)
    try:
        return _train(args, cfg, acc)
    finally:
        # every process tears its process group down itself: a worker that exits with gloo's threads still
        # running aborts ("terminate called without an active exception") and the launcher fails the run
        acc.end_training()


def _train(args, cfg, acc):
    from accelerate.utils import set_seed

    from train.engine import TrainError, fit
    set_seed(cfg.seed)
    datasets, labels = build_datasets(cfg)
    if cfg.shots:
        from train.data.built import BuiltDataset, few_shot
        if not isinstance(datasets["train"], BuiltDataset):  # the draw needs each model's family
            raise SystemExit(f"error: --shots needs a built benchmark (sh3d, kicad33), not {cfg.dataset}")
        datasets["train"] = few_shot(datasets["train"], cfg.shots, cfg.seed)
    acc.print(f"{cfg.dataset}: {', '.join(f'{k} {len(v)}' for k, v in datasets.items())} clouds, "
              f"{len(labels)} classes; " + ("PointNeXt-S from scratch" if cfg.variant == "pointnext" else
                                            f"backbone {cfg.backbone} ({cfg.variant})"))
    model, info = build_model(cfg, labels)
    acc.print(f"trainable parameters {model.num_trainable():,} of {model.num_trainable() + model.num_backbone():,}"
              if cfg.variant != "from_scratch" else f"trainable parameters {model.num_trainable():,}")
    out = Path(cfg.output_dir)
    if not args.resume and (out / "last.pt").exists():
        raise SystemExit(f"error: {out} already holds a run; pass --resume to continue it or choose another "
                         "--output-dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(run_config_dict(cfg), indent=2))
    from train.record import start_record
    record = start_record(cfg, cfg.name or out.name)
    record_path = Path(args.record) if args.record else out / "record.json"
    if acc.is_main_process:
        record.save(record_path)
    try:
        result = fit(model, datasets, out_dir=out, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                     weight_decay=cfg.weight_decay, warmup_epochs=min(cfg.warmup_epochs, max(0, cfg.epochs - 1)),
                     grad_clip=cfg.grad_clip, seed=cfg.seed, votes=cfg.votes, resume=args.resume,
                     limit_batches=cfg.limit_batches, max_steps=cfg.max_steps, accelerator=acc, decay_all=cfg.decay_all,
                     resample_to=cfg.points if cfg.resample else None, rotate=cfg.rotate)
    except TrainError as err:
        raise SystemExit(f"error: {err}")
    if acc.is_main_process:
        entry = export_entry(cfg, acc.unwrap_model(model), info, result, datasets, out)
        test = datasets["test"]
        record.finish(result, json.loads((entry / "config.json").read_text()), result["test_correct"],
                      getattr(test, "groups", None)).save(record_path)
        acc.print(f"test acc {result['test_acc']:.4f} (voting {result['test_acc_vote']:.4f}), mean class acc "
                  f"{result['test_mean_class_acc']:.4f}; entry written to {entry}")
        if cfg.push_to_hub:
            from zoo.hub import push_entry
            sha = push_entry(entry, cfg.push_to_hub)
            acc.print(f"pushed to {cfg.push_to_hub}@{sha}")
    return result


if __name__ == "__main__":
    main()
