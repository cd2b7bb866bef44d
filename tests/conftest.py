import pytest


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A converted-weights cache (ANY2POINT_CACHE) per test module; tests that need a cold cache use their own."""
    path = tmp_path_factory.mktemp("a2p_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ANY2POINT_CACHE", str(path))
    yield path
    mp.undo()
