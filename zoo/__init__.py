"""Named, pinned, loadable Any2Point models. `from zoo import list_models, load_model`."""
from zoo.registry import ENTRIES, ModelUnavailable, build_backbone, list_models, load_model

__all__ = ["ENTRIES", "ModelUnavailable", "build_backbone", "list_models", "load_model"]
