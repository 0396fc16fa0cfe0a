"""Zero-data-retention middleware for OpenAI-compatible inference servers."""

from .middleware import RetentionMiddleware
from .settings import RetentionSettings, SettingsError

__version__ = "0.1.0"

__all__ = ["RetentionMiddleware", "RetentionSettings", "SettingsError", "__version__"]
