"""Named, pinned, loadable Any2Point models and the point files they read.

    from zoo import list_models, load_model, read_points

Names are imported on first use: `zoo.files` (the reader, and the worker process that reads uploads) must not pull
in torch and the registry.
"""
import importlib

_HOME = {"SUPPORTED_EXTENSIONS": "files", "PointCloudError": "files", "read_points": "files", "write_points": "files",
         "ENTRIES": "registry", "ModelUnavailable": "registry", "build_backbone": "registry",
         "list_models": "registry", "load_model": "registry", "ZooModel": "serving"}
__all__ = sorted(_HOME)


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f"zoo.{_HOME[name]}"), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
