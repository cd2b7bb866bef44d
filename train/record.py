"""The typed run record: one small JSON file per training run that outlives the run's folder.

train/run.py writes it when the run starts (the key: benchmark, backbone, method, ablation, seed, fold, shots; status
"running") and completes it at the end (status "done": the result, the entry's settings and which test models the
best-on-val model got right, with their bootstrap groups). Tables read the fields back; nothing is ever decoded from
a run's name. The suite's runs keep theirs in benchmarks/results/<campaign>/<name>.json (committed).
"""
import dataclasses
import json
from pathlib import Path

KEY = ("benchmark", "backbone", "method", "ablation", "seed", "fold", "shots")


class RecordError(ValueError):
    """A record file that is not a run record (unknown or missing fields), in one line."""


@dataclasses.dataclass
class RunRecord:
    name: str
    benchmark: str  # the dataset the run trained and tested on: sh3d | kicad33 | scanobjectnn | ...
    backbone: str  # zoo.specs.short_name of the recipe's backbone spec (a baseline keeps the spec it is compared with)
    method: str  # the run's variant: any2point | linear_probe | from_scratch | random_backbone | pointnext | ...
    ablation: str | None = None  # what the run changes from its recipe (a key of benchmarks.suite's ablation tables)
    seed: int = 0
    fold: int | None = None  # cross-validation round (test = fold k); None: the benchmark's default split
    shots: int | None = None  # training models per class (low-data runs); None: the whole training split
    status: str = "running"  # running | done
    run_config: dict = dataclasses.field(default_factory=dict)  # train/run.py's RunConfig as JSON
    result: dict | None = None  # train/engine.fit's result (test, val, cost), without the per-model lists
    entry: dict | None = None  # the run's entry: modality, variant, model settings, adapter sha256
    test_correct: list[int] | None = None  # per test model, in the dataset's order: 1 if the single pass was right
    test_groups: list[str] | None = None  # per test model, its bootstrap group (kicad33: family); None: itself

    @property
    def key(self):
        return tuple(getattr(self, k) for k in KEY)

    @property
    def recipe(self):
        """What repeats over seeds and folds: runs with the same recipe key pool into one table row."""
        return self.benchmark, self.backbone, self.method, self.ablation, self.shots

    @property
    def done(self):
        return self.status == "done"

    def groups(self):
        """Each test model's bootstrap group (its own index where the dataset has no groups)."""
        return list(self.test_groups) if self.test_groups else [str(i) for i in range(len(self.test_correct or []))]

    def finish(self, result, entry_config, correct, groups=None):
        """Complete the record at the end of the run (returns self)."""
        self.status = "done"
        self.result = {k: v for k, v in result.items() if k != "test_correct"}
        self.entry = {**{k: entry_config.get(k) for k in ("modality", "variant", "model")},
                      "adapter_sha256": (entry_config.get("adapter") or {}).get("sha256")}
        start = (entry_config.get("training") or {}).get("init_from_sha256")
        if start:  # which version of the start entry (its name outlives its weights)
            self.entry["init_from_sha256"] = start
        self.test_correct = [int(v) for v in correct]
        groups = [str(g) for g in groups] if groups is not None else None
        self.test_groups = groups if groups and groups != [str(i) for i in range(len(groups))] else None
        return self

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d, where="record"):
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        missing = [k for k in ("name", "benchmark", "backbone", "method") if k not in d]
        if unknown or missing:
            raise RecordError(f"{where}: not a run record ({'unknown field ' + repr(unknown[0]) if unknown else ''}"
                              f"{'; ' if unknown and missing else ''}"
                              f"{'missing field ' + repr(missing[0]) if missing else ''})")
        return cls(**d)

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}: not JSON ({err})") from err
        if not isinstance(d, dict):
            raise RecordError(f"{path}: not a run record (a JSON object is expected)")
        return cls.from_dict(d, where=str(path))


def start_record(cfg, name):
    """The record of a run that is starting, from its RunConfig `cfg` (train/run.py)."""
    from train.run import run_config_dict
    from zoo.specs import short_name
    # a 3D-native baseline has no pretrained backbone: its record names its own network
    backbone = "pointnext-sm" if cfg.variant == "pointnext" else short_name(cfg.backbone)
    return RunRecord(name=name, benchmark=cfg.dataset, backbone=backbone, method=cfg.variant,
                     ablation=cfg.ablation, seed=cfg.seed, fold=cfg.fold, shots=getattr(cfg, "shots", None),
                     run_config=run_config_dict(cfg))


def campaign_folders(results):
    """The folders of run records under `results` (benchmarks/results): every subfolder but gpu/, which holds the
    GPU check's records (benchmarks/gpu.py), another format."""
    return sorted(p for p in Path(results).iterdir() if p.is_dir() and p.name != "gpu")


def load_records(folder, done=True):
    """Every run record in `folder` (sorted by name); done=True keeps the finished runs only."""
    out = [RunRecord.load(p) for p in sorted(Path(folder).glob("*.json"))]
    return [r for r in out if r.done or not done]
