"""Task formats: importing this package registers a handler for every TaskFormat."""
from . import choice, classification, qa, tagging  # noqa: F401  (register the handlers)
from .base import FORMATS, IGNORE, FormatHandler, handler_for

__all__ = ["FORMATS", "IGNORE", "FormatHandler", "handler_for"]
