"""The datasets' table: one row registers a dataset for train/run.py, and the zoo reads the same table."""
import json

import numpy as np
import pytest
import torch

from tests.tiny import sphere_cube_clouds
from train import run
from train.data import TABLE, DatasetSpec, dataset_spec, register

# a dataset of this module's own, registered below in one row: its loader and the facts the table reads from it
CLASSES = ("ball", "box")
UP_PRIOR = 0.5
DATA_LICENCE = "CC0-1.0 (made up by the test)"


class Blobs(torch.utils.data.Dataset):
    """root/<split>.npz holding points (n, N, 3) and labels (n,)."""

    def __init__(self, root, split, num_points=1024):
        data = np.load(f"{root}/{split}.npz")
        self.points, self.targets = data["points"][:, :num_points], data["labels"]
        self.labels = list(CLASSES)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.from_numpy(self.points[i]), int(self.targets[i])


@pytest.fixture
def blobs(tmp_path):
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        pts, labels = sphere_cube_clouds(n, 160, seed=n)
        np.savez(tmp_path / f"{split}.npz", points=pts, labels=labels)
    spec = register(DatasetSpec("blobs", f"{__name__}:Blobs", "spheres and cubes written by a test"))
    yield tmp_path
    assert TABLE.pop("blobs") is spec


def test_a_dataset_is_one_row_and_trains_end_to_end(tmp_path, blobs):
    out = tmp_path / "run"
    result = run.main(["--dataset", "blobs", "--data-root", str(blobs), "--backbone", "scratch:2d", "--epochs", "1",
                       "--batch-size", "4", "--points", "128", "--votes", "1", "--output-dir", str(out)])
    assert 0 <= result["test_acc"] <= 1
    config = json.loads((out / "entry/config.json").read_text())
    assert config["labels"] == list(CLASSES) and config["training"]["dataset"] == "blobs"
    assert config["training"]["sizes"] == {"train": 12, "val": 4, "test": 4}  # its own val split, not a carve-out
    assert config["up_prior"] == UP_PRIOR  # the table's up prior reaches the entry
    assert DATA_LICENCE in (out / "entry/README.md").read_text()


def test_argparse_the_registry_and_entries_read_the_table(blobs):
    assert run.parse_args(["--dataset", "blobs"]).dataset == "blobs"
    with pytest.raises(SystemExit):
        run.parse_args(["--dataset", "no-such-data"])
    spec, variant = dataset_spec("scanobjectnn-pb-t50-rs")  # an entry's name of a table row
    assert spec.name == "scanobjectnn" and variant == "PB_T50_RS" and len(spec.classes) == 15
    from zoo.registry import ENTRIES, entry_labels, is_trained, train_command
    for entry in ENTRIES:
        spec, variant = dataset_spec(entry.dataset)
        assert spec.flags(variant) in train_command(entry) or "--config" in train_command(entry)
        if not is_trained(entry):
            assert entry_labels(entry) == spec.classes
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        dataset_spec("nope")
