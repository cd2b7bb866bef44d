"""Zoo entry artifacts: save / load / verify adapter-only entries, from a folder or pinned on the Hub.

An entry is a folder (or Hub repo) with `config.json`, `adapter.safetensors` (trainable tensors only) and a
`README.md` model card. The frozen backbone is never stored; `config["backbone"]["sha256"]` pins the exact weights.
Nothing downloaded is ever unpickled, and Hub files are only fetched at a 40-hex commit.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from huggingface_hub import (
    CommitOperationAdd,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from zoo import specs

FORMAT = "any2point-entry"
FORMAT_VERSION = 1
CONFIG, ADAPTER, CARD = "config.json", "adapter.safetensors", "README.md"
ENTRY_FILES = (CONFIG, ADAPTER, CARD)
REQUIRED = ("name", "modality", "labels", "backbone", "model")

_SHA = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"(?:hf://)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w.-]+))?")


class EntryError(ValueError):
    """An entry cannot be used as it is; the message is one line that says what differs or is missing."""


# ---------------------------------------------------------------------------------------------------------- save

def save_entry(folder, *, config: dict, state: dict, card_extra: dict | None = None) -> Path:
    """Write config.json, adapter.safetensors and README.md into `folder`; returns the folder.

    The caller's config is stored as given plus `format`, `format_version` and `adapter.{sha256, num_parameters,
    keys}`. config.json is written last: it carries the adapter's sha256, so an interrupted save leaves an entry
    that fails verification instead of one that loads the wrong weights.
    """
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise EntryError(f"config lacks {', '.join(missing)}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EntryError(f"state values must be tensors; not: {', '.join(map(str, bad[:3]))}")
    # clone: safetensors refuses tensors that share storage (tied parameters)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    blob = st_save(tensors, metadata={"format": "pt"})

    config = json.loads(json.dumps(config))  # a copy, and fail early if not JSON-serialisable
    if card_extra:  # kept, so the card can be written again (rewrite_card) with what is learnt later
        config["card"] = json.loads(json.dumps({**config.get("card", {}), **card_extra}))
    config["format"], config["format_version"] = FORMAT, FORMAT_VERSION
    # num_parameters counts every stored element (buffers such as BN statistics included)
    config["adapter"] = {**config.get("adapter", {}), "sha256": hashlib.sha256(blob).hexdigest(),
                         "num_parameters": sum(t.numel() for t in tensors.values()), "keys": len(tensors)}

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / ADAPTER, blob)
    _write_atomic(folder / CARD, model_card(config, card_extra).encode())
    _write_atomic(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return folder


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------- load

def load_entry(location, *, revision: str | None = None, endpoint: str | None = None, cache_dir=None,
               token=None) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """Load and verify an entry from a local folder or a Hub repo ("owner/name", "hf://owner/name[@sha]").

    Returns (config, state, local_folder). Hub entries must be pinned to a 40-hex commit.
    """
    if isinstance(location, os.PathLike) or Path(str(location)).is_dir():
        folder = Path(location)
        if not folder.is_dir():
            raise EntryError(f"no entry folder at {folder}")
    else:
        folder = _fetch(str(location), revision, endpoint, cache_dir, token)
    return (*_read_folder(folder), folder)


def _read_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    for name in (CONFIG, ADAPTER):
        if not (folder / name).is_file():
            raise EntryError(f"{folder} has no {name}")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise EntryError(f"{folder / CONFIG} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        fmt = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise EntryError(f"{folder / CONFIG} is not an {FORMAT} config (format {fmt!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise EntryError(f"{folder.name}: format_version {config.get('format_version')!r} is not supported "
                         f"(this code reads {FORMAT_VERSION})")
    # Hash and parse the same bytes, so what is verified is exactly what is loaded.
    blob = (folder / ADAPTER).read_bytes()
    expected, actual = config.get("adapter", {}).get("sha256"), hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise EntryError(f"{ADAPTER} does not match its config (sha256 {actual[:12]}… != {str(expected)[:12]}…)")
    try:
        return config, st_load(blob)
    except Exception as e:  # safetensors' own parse errors: header, offsets, dtypes
        raise EntryError(f"{folder / ADAPTER} is not a valid safetensors file ({e})") from None


def _fetch(location: str, revision, endpoint, cache_dir, token) -> Path:
    m = _REPO.fullmatch(location)
    if m is None:
        raise EntryError(f"{location!r} is neither an entry folder nor a Hub repo id (owner/name)")
    repo_id = m["repo"]
    if m["rev"] and revision and m["rev"] != revision:
        raise EntryError(f"{location}: two revisions given ({m['rev']} and {revision})")
    revision = revision or m["rev"]
    if not (isinstance(revision, str) and _SHA.fullmatch(revision)):
        raise EntryError(f"{location!r} is not a local folder; as a Hub repo it needs revision=<40-hex commit sha> "
                         f"(got {revision!r})")
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    kw = dict(revision=revision, endpoint=endpoint, cache_dir=cache_dir, token=token)
    try:  # a pinned commit already in the cache needs no network at all
        paths = [hf_hub_download(repo_id, f, local_files_only=True, **kw) for f in (CONFIG, ADAPTER)]
        return Path(paths[0]).parent
    except LocalEntryNotFoundError:
        pass
    where = f"{repo_id}@{revision}"
    advice = "download it once while online, or give the entry as a local folder"
    if constants.is_offline_mode():
        raise EntryError(f"{where} is not in the local cache and HF_HUB_OFFLINE is set; {advice}")
    filename = CONFIG
    try:
        # One quick probe without retries first: hf_hub_download retries connection errors with backoff (~20 s)
        # before giving up, which would stall every listing of an unreachable entry.
        get_hf_file_metadata(hf_hub_url(repo_id, CONFIG, revision=revision, endpoint=endpoint), token=token)
        for filename in (CONFIG, ADAPTER, CARD):
            path = hf_hub_download(repo_id, filename, **kw)
        return Path(path).parent
    except RepositoryNotFoundError:
        raise EntryError(f"no Hub repo {repo_id} at {endpoint} (or no access to it)") from None
    except RevisionNotFoundError:
        raise EntryError(f"Hub repo {repo_id} has no revision {revision}") from None
    except RemoteEntryNotFoundError:
        if filename == CARD:  # the card is documentation; an entry without one still loads
            return Path(path).parent
        raise EntryError(f"{where} has no {filename}") from None
    except Exception as e:  # refused, DNS, timeouts, 5xx, proxies...: the entry is unavailable right now
        reason = (str(e).strip().splitlines() or [""])[0][:120]
        raise EntryError(f"{where} is not in the local cache and could not be fetched from {endpoint} "
                         f"({type(e).__name__}: {reason}); {advice}") from None


# ---------------------------------------------------------------------------------------------------------- checks

def check_state(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> None:
    """Raise EntryError if `state` does not have exactly the keys and shapes in `expected`."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {_few(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch {len(shapes)}: " + _few(
            [f"{k} expected {tuple(expected[k])} got {tuple(state[k].shape)}" for k in shapes]))
    if parts:
        raise EntryError("adapter state does not fit the model: " + "; ".join(parts))


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", … (+{len(items) - n})" if len(items) > n else "")


def check_backbone(config: dict, actual_sha256: str) -> None:
    """Raise EntryError unless the backbone built here is bit-identical to the one the entry was trained on."""
    backbone = config.get("backbone", {})
    expected = backbone.get("sha256")
    if not expected:
        raise EntryError(f"entry {config.get('name')!r} does not record its backbone's sha256")
    if expected != actual_sha256:
        raise EntryError("backbone weights differ from the ones this entry was trained on: "
                         f"expected {expected[:12]}…, got {actual_sha256[:12]}… (spec {backbone.get('spec')})")


# ---------------------------------------------------------------------------------------------------------- push

def push_entry(folder, repo_id: str, *, token=None, endpoint=None, private=False, commit_message=None) -> str:
    """Upload a verified entry folder to `repo_id`; returns the 40-hex commit sha to pin in the registry.

    One create_commit with exactly the entry's files (rather than upload_folder, which with hf_xet installed may
    split a folder over several commits and would also pick up stray files): the returned sha has the whole entry.
    """
    folder = Path(folder)
    config, _ = _read_folder(folder)  # never publish an entry that would not load
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f))
           for f in ENTRY_FILES if (folder / f).is_file()]
    info = api.create_commit(repo_id, operations=ops,
                             commit_message=commit_message or f"Upload {config['name']}")
    if not _SHA.fullmatch(info.oid or ""):
        raise EntryError(f"Hub returned no commit sha for {repo_id} (got {info.oid!r})")
    return info.oid


# ---------------------------------------------------------------------------------------------------------- card

def _hub_id(backbone: dict) -> str | None:
    """The backbone's Hub model id, when it has one: explicit `hub_id`, else the spec's Hub repo."""
    if backbone.get("hub_id"):
        return backbone["hub_id"]
    try:
        return specs.hub_repo(str(backbone.get("spec", "")))
    except ValueError:  # a card for an entry whose spec this version does not know still renders
        return None


def _metric_rows(config: dict) -> list[tuple[str, str, object]]:
    """(dataset, metric, value) from config["metrics"]: flat {metric: value} or {dataset: {metric: value}}."""
    default = str(config.get("training", {}).get("dataset", "unknown"))
    rows = []
    for key, value in config.get("metrics", {}).items():
        if isinstance(value, dict):
            rows += [(key, k, v) for k, v in value.items()]
        else:
            rows.append((default, key, value))
    return rows


def rewrite_card(folder, **card_extra) -> Path:
    """Write an entry's README.md again from its config.json, with `card_extra` merged into what the card already
    says (config "card"): e.g. comparison=[markdown lines] once the baselines are measured. Weights untouched."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    config["card"] = json.loads(json.dumps({**config.get("card", {}), **card_extra}))
    _write_atomic(folder / CARD, model_card(config).encode())
    _write_atomic(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return folder


def model_card(config: dict, card_extra: dict | None = None) -> str:
    """README.md text: YAML front matter the Hub indexes (base_model, license, datasets, tags, metrics) + body.
    card_extra (merged over the config's stored "card"): description, license, datasets, repo_id, attribution,
    data_licence, comparison (markdown lines)."""
    extra = {**config.get("card", {}), **(card_extra or {})}
    name, modality = config["name"], config["modality"]
    backbone, training, adapter = config["backbone"], config.get("training", {}), config.get("adapter", {})
    rows = _metric_rows(config)
    scores = [(d, m, v) for d, m, v in rows if isinstance(v, float)]  # ints such as best_epoch are not scores
    datasets = extra.get("datasets") or training.get("dataset")
    data = ModelCardData(
        base_model=_hub_id(backbone),
        license=extra.get("license") or config.get("license") or "other",
        datasets=[datasets] if isinstance(datasets, str) else datasets,
        tags=["point-cloud", "3d", "any2point", modality],
        library_name="any2point-zoo",
        metrics=sorted({m for _, m, _ in scores}) or None,
        model_name=name if scores else None,
        eval_results=[EvalResult(task_type="point-cloud-classification", task_name="3D point cloud classification",
                                 dataset_type=d, dataset_name=d, metric_type=m, metric_value=v)
                      for d, m, v in scores] or None,
    )
    repo_hint = extra.get("repo_id", "<owner>/<repo>")
    n = adapter.get("num_parameters")
    n_params = f"{n:,}" if isinstance(n, int) else "few"
    lines = [
        f"# {name}", "",
        extra.get("description") or (
            f"A 3D point-cloud classifier in the Any2Point style: a frozen pretrained **{modality}** transformer "
            "reads point tokens through a parameter-free virtual projection into its own positional space; only "
            f"the tokenizer, adapters and head ({n_params} parameters) were trained. This repo holds those weights "
            "only; the backbone is obtained separately and checked against its fingerprint before use."),
        "", f"Classes ({len(config['labels'])}): " + ", ".join(map(str, config["labels"])), "",
        f"Up axis: the entry expects clouds **{config.get('up') or 'y'} up**; `predict(points, up=\"z\")` turns a "
        "z-up file exactly, `up=\"auto\"` decides per cloud.", "",
        "## Backbone", "", "| | |", "|---|---|",
        *[f"| {k} | `{v}` |" for k, v in backbone.items() if isinstance(v, (str, int, float))],
        "", "`sha256` is the fingerprint of the backbone state dict (names, dtypes, shapes, bytes); the entry "
        "refuses to run on any other weights.", "",
        "## Training data", "",
        *[f"- {k}: " + (", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else str(v))
          for k, v in training.items()],
        *([f"- data licence: {extra['data_licence']}"] if extra.get("data_licence") else []),
    ]
    if extra.get("attribution"):
        lines += ["", "### Attribution", ""]
        lines += [f"- {a}" if not isinstance(a, dict) else "- " + ", ".join(f"{k}: {v}" for k, v in a.items())
                  for a in extra["attribution"]]
    if extra.get("comparison"):
        lines += ["", "## Compared with baselines", "", *extra["comparison"]]
    if rows:
        lines += ["", "## Results", "", "| dataset | metric | value |", "|---|---|---|"]
        lines += [f"| {d} | {m} | {v:.4f} |" if isinstance(v, float) else f"| {d} | {m} | {v} |" for d, m, v in rows]
    lines += [
        "", "## Usage", "", "```python", "from zoo import load_model", "",
        f'm = load_model("{name}")  # from the zoo registry',
        "m.predict(points)  # (N, 3) points -> {label: probability}",
        "```", "",
        "The raw artifact, from a folder or from the Hub pinned to a commit:", "", "```python",
        "from zoo.hub import load_entry", "",
        'config, state, folder = load_entry("path/to/entry")',
        f'config, state, folder = load_entry("{repo_hint}", revision="<40-hex commit sha>")', "```", "",
        "Fine-tuned on your own classes (a folder with one sub-folder of meshes or clouds per class; the classifier "
        "layer starts fresh, everything else from this entry):", "", "```bash",
        f"python -m train.run --init-from {name} --dataset folder --data-root my_meshes/ --epochs 50", "```", "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)).content
