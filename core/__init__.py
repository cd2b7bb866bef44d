"""Any2Point: frozen 1D/2D transformers as 3D point-cloud classifiers. Framework code only (no I/O, no downloads)."""
from core.config import PRESETS, Any2PointConfig, ConfigError
from core.model import Any2Point

__all__ = ["PRESETS", "Any2Point", "Any2PointConfig", "ConfigError"]
