import pytest


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A converted-weights cache (ANY2POINT_CACHE) per test module; tests that need a cold cache use their own."""
    path = tmp_path_factory.mktemp("a2p_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ANY2POINT_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture
def meshes(tmp_path):
    """A folder dataset: box and ball meshes (.obj, .stl, .ply) per split and class."""
    import trimesh
    root = tmp_path / "meshes"
    for split, n in [("train", 6), ("val", 2), ("test", 2)]:
        for cls, make in [("box", lambda i: trimesh.creation.box(extents=[1, 1 + 0.1 * i, 1])),
                          ("ball", lambda i: trimesh.creation.icosphere(subdivisions=1, radius=1 + 0.05 * i))]:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make(i).export(root / split / cls / f"{cls}{i}.{['obj', 'stl', 'ply'][i % 3]}")
    return root
