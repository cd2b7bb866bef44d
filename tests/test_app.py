"""The Gradio app through gradio_client, as a remote user calls it: every format predicts, bad files get a clear
error, and the app keeps serving."""

import numpy as np
import pytest
import trimesh
from gradio_client import Client, handle_file

import app
from zoo.files import write_points
from zoo.registry import get_entry
from benchmarks.app_load import free_port

WHISPER = app.DEFAULTS["audio"]  # the smallest backbone: format tests call only this entry


@pytest.fixture(scope="module")
def client():
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                    max_file_size="200mb")
    yield Client(app.demo.local_url, verbose=False)
    app.demo.close()


def predict(client, path, entries=(app.NONE, app.NONE, WHISPER)):
    return client.predict(handle_file(str(path)), *entries, api_name="/predict")


def assert_probs(result, names):
    assert set(result) == set(names)
    for probs in result.values():
        assert abs(sum(probs.values()) - 1) < 1e-4 and all(0 <= p <= 1 for p in probs.values())


def box_cloud(n=300, seed=0):
    return trimesh.sample.sample_surface(trimesh.creation.box(), n, seed=seed)[0].astype(np.float32)


def write_format(tmp_path, ext):
    path = tmp_path / f"shape{ext}"
    mesh = trimesh.creation.box(extents=[1, 2, 0.5])
    if ext in (".obj", ".stl", ".off", ".glb"):
        mesh.export(path)
    elif ext == ".gltf":
        files = trimesh.Scene(mesh).export(file_type="gltf", embed_buffers=True)
        path.write_bytes(files["model.gltf"])
    elif ext == ".ply":
        write_points(path, box_cloud())
    elif ext in (".xyz", ".txt", ".pts"):
        np.savetxt(path, box_cloud(), fmt="%.6f")
    elif ext == ".npy":
        np.save(path, box_cloud())
    elif ext == ".npz":
        np.savez(path, points=box_cloud())
    elif ext == ".pcd":
        pts = box_cloud()
        head = (f"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {len(pts)}\nHEIGHT 1\n"
                f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\nDATA ascii\n")
        path.write_text(head + "\n".join(" ".join(f"{v:.6f}" for v in p) for p in pts) + "\n")
    return path


@pytest.mark.parametrize("ext", [".ply", ".obj", ".stl", ".off", ".glb", ".gltf", ".xyz", ".txt", ".pts", ".npy",
                                 ".npz", ".pcd"])
def test_every_format_predicts(client, tmp_path, ext):
    assert_probs(predict(client, write_format(tmp_path, ext)), [WHISPER])


def test_three_modalities_side_by_side(client):
    result = client.predict(handle_file(str(app.HERE / "examples" / "bunny.ply")), api_name="/predict")
    assert_probs(result, list(app.DEFAULTS.values()))
    # the UI endpoint also returns the cards, the 3D view and the plot
    out = client.predict(handle_file(str(app.HERE / "examples" / "chair.ply")), *app.DEFAULTS.values(),
                         api_name="/compare")
    labels, cards = out[:3], out[3:6]
    assert all(lab["label"] in app.get_model(n).labels for lab, n in zip(labels, app.DEFAULTS.values()))
    assert all("trainable" in card and "ms" in card for card in cards)
    assert str(out[6]).endswith(".ply")


def bad_files(tmp_path):
    (tmp_path / "empty.ply").write_bytes(b"")
    (tmp_path / "garbage.ply").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "nan.xyz").write_text("0 0 0\n1 nan 0\n0 1 1\n")
    (tmp_path / "one.xyz").write_text("1 2 3\n")
    (tmp_path / "same.xyz").write_text("1 2 3\n" * 50)
    np.save(tmp_path / "huge.npy", np.zeros((5_000_000, 3), dtype=np.float32))  # 60 MB > the 50 MB limit
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04 not a point cloud")
    return {"empty.ply": "empty", "garbage.ply": "corrupt", "nan.xyz": "NaN", "one.xyz": "only 1 point",
            "same.xyz": "identical", "huge.npy": "MiB limit", "notes.docx": "invalid file type"}


def test_bad_inputs_get_clear_errors_and_the_app_keeps_serving(client, tmp_path):
    for name, phrase in bad_files(tmp_path).items():
        with pytest.raises(Exception) as err:
            predict(client, tmp_path / name)
        message = str(err.value)
        assert phrase.lower() in message.lower(), f"{name}: {message}"
        assert "Traceback" not in message and len(message) < 400, f"{name}: {message}"
        assert_probs(predict(client, write_format(tmp_path, ".ply")), [WHISPER])  # still serving


def test_large_cloud_is_downsampled(client, tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).normal(size=(600_000, 3)).astype(np.float32))  # 7 MB, > 200k points
    assert_probs(predict(client, path), [WHISPER])


def test_no_entry_selected_is_an_error(client, tmp_path):
    with pytest.raises(Exception, match="at least one"):
        predict(client, write_format(tmp_path, ".ply"), entries=(app.NONE, app.NONE, app.NONE))


def test_cards_say_plainly_whether_an_entry_is_trained():
    class Fake:
        trained = False
        num_trainable, num_backbone = (lambda self: 1_234), (lambda self: 5_678_000)

    text = app.card("some-entry", Fake(), 12.3)
    assert "untrained (random adapter)" in text and "12 ms" in text and "1,234" in text and "5,678,000" in text
    Fake.trained = True
    assert app.card("some-entry", Fake(), 1).split("  \n")[1].startswith("trained ·")


def test_zoo_table_lists_every_entry_with_why_it_is_missing():
    table = app.zoo_table()
    for row in app.list_models():
        assert row["name"] in table
        if not row["available"]:
            assert row["reason"] in table


def test_concurrent_comparisons_of_the_same_entry(client):
    """Two queue workers on one cached model: explain() records view weights on it, so the app serialises per entry."""
    entries = (app.NONE, app.NONE, WHISPER)
    jobs = [client.submit(handle_file(str(app.HERE / "examples" / name)), *entries, api_name="/compare")
            for name in ("bunny.ply", "chair.ply", "sofa.ply", "table.ply")]
    for job in jobs:
        out = job.result(timeout=300)
        assert out[2]["label"] in app.get_model(WHISPER).labels and "ms" in out[5]


def test_up_axis_input_turns_a_z_up_upload_back(client, tmp_path):
    """The API's last, optional input: a z-up file with up="z" gets the y-up file's probabilities; without it the
    old calls (above) still work and read files y up."""
    from core.points import reorient
    from zoo.files import read_points
    cloud = read_points(app.HERE / "examples" / "sofa.ply", num_points=2048)
    np.save(tmp_path / "y.npy", cloud)
    np.save(tmp_path / "z.npy", reorient(cloud, "y", to="z"))
    entries = (app.NONE, app.NONE, WHISPER)
    y_up = client.predict(handle_file(str(tmp_path / "y.npy")), *entries, api_name="/predict")
    told = client.predict(handle_file(str(tmp_path / "z.npy")), *entries, "z", api_name="/predict")
    untold = client.predict(handle_file(str(tmp_path / "z.npy")), *entries, api_name="/predict")
    assert told == y_up and untold != y_up
    out = client.predict(handle_file(str(tmp_path / "z.npy")), *entries, "auto", api_name="/compare")
    assert "up (auto)" in out[5]
    with pytest.raises(Exception, match="sideways"):  # Gradio's own check of the radio's choices
        client.predict(handle_file(str(tmp_path / "y.npy")), *entries, "sideways", api_name="/predict")
    assert app.check_up(None) == "y"
    with pytest.raises(app.gr.Error, match="Unknown up axis"):  # and ours, for callers of predict() in Python
        app.check_up("sideways")


def test_recipes_are_not_in_the_pickers():
    offered = {name for task in app.TASKS for m in app.MODALITIES for name in app.choices(m, task)}
    for row in app.list_models():
        assert (row["name"] in offered) == (row["trained"] and row["available"])


@pytest.mark.parametrize("task", list(app.TASKS))
def test_each_task_offers_its_own_entries_and_examples(task):
    *pickers, = app.pick_task(task)
    dropdowns, columns = pickers[:3], pickers[3:]
    for m, d in zip(app.MODALITIES, dropdowns):
        assert d.value == app.TASK_DEFAULTS[task][m]
        names = [c[0] if isinstance(c, tuple) else c for c in d.choices]
        assert names[-1] == app.NONE and all(get_entry(n).dataset == task for n in names[:-1])
    assert [c.visible for c in columns] == [t == task for t in app.TASKS]
    assert app.EXAMPLES[task]  # every task ships examples
    with pytest.raises(app.gr.Error, match="Unknown task"):
        app.pick_task("kitchens")


def test_example_copies_outlive_the_cache_cleaning():
    """delete_cache's hourly clean (and a server's close) deletes the app's cached files, never the examples'
    copies: an example clicked after an hour, or after a restart in the same process, must still be there."""
    from pathlib import Path
    from gradio.route_utils import delete_files_created_by_app
    cached = [Path(f) for files in app.demo.temp_file_sets for f in files]
    examples = [app.HERE / e for task in app.TASKS for e in app.EXAMPLES[task]]
    copies = [str(f) for f in cached for e in examples
              if f.name == e.name and f.exists() and f.read_bytes() == e.read_bytes()]
    assert len(copies) >= len(examples)  # every example has its copy in the cache
    delete_files_created_by_app(app.demo, age=None)  # what the server does on close: every file, whatever its age
    assert [f for f in copies if not Path(f).exists()] == []


def test_component_entries_side_by_side(client):
    """A session that switched task may pick that task's entries (the pickers validate against what they offer)."""
    entries = list(app.TASK_DEFAULTS["kicad33"].values())
    session = Client(app.demo.local_url, verbose=False)  # its own session: the shared one stays on furniture
    with pytest.raises(Exception, match="not in the list of choices"):
        session.predict(handle_file(str(app.HERE / "examples" / "components" / "relay.ply")), *entries,
                        api_name="/predict")
    offered = session.predict("kicad33", api_name="/pick_task")
    assert [p["value"] for p in offered[:3]] == entries
    result = session.predict(handle_file(str(app.HERE / "examples" / "components" / "relay.ply")), *entries,
                            api_name="/predict")
    assert_probs(result, entries)
    for name, probs in result.items():  # the 33 component classes, not furniture
        assert len(probs) == 33 and set(probs) == set(app.get_model(name).labels) and "relay" in probs


def test_an_upload_over_the_read_bounds_gets_one_line_and_the_next_succeeds(client, tmp_path, monkeypatch):
    """Reading runs in a worker with a deadline and a memory cap: over either, one line; the app keeps serving."""
    slow = tmp_path / "slow.xyz"
    np.savetxt(slow, np.random.default_rng(0).normal(size=(400_000, 3)), fmt="%.6f")  # ~11 MB: 0.2 s or more to parse
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(1).normal(size=(2_000_000, 3)).astype(np.float32))  # 24 MB to hold
    for name, value, path, phrase in [("READ_TIMEOUT_S", 0.05, slow, "took more than 0.05 s"),
                                      ("READ_MEMORY_MB", 16, big, "memory")]:
        monkeypatch.setattr(app, name, value)
        with pytest.raises(Exception) as err:
            predict(client, path)
        message = str(err.value)
        assert phrase in message and "Traceback" not in message and len(message) < 400, message
        monkeypatch.undo()
        assert_probs(predict(client, path), [WHISPER])  # the same file within the normal bounds
    hostile = tmp_path / "declares.pcd"
    hostile.write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1000000000\nDATA binary\n" + bytes(36))
    with pytest.raises(Exception, match="declares 1000000000 points but holds 3"):
        predict(client, hostile)
    assert_probs(predict(client, write_format(tmp_path, ".ply")), [WHISPER])
