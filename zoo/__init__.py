"""Named, pinned, loadable Any2Point models and the point files they read.

    from zoo import list_models, load_model, read_points
"""
from zoo.files import SUPPORTED_EXTENSIONS, PointCloudError, read_points, write_points
from zoo.registry import ENTRIES, ModelUnavailable, build_backbone, list_models, load_model

__all__ = ["ENTRIES", "SUPPORTED_EXTENSIONS", "ModelUnavailable", "PointCloudError", "build_backbone", "list_models",
           "load_model", "read_points", "write_points"]
