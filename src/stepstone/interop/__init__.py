"""Zoo entries to and from other libraries' adapter formats: PEFT (peft.py)."""
from .peft import (MODULE_OF, MODULES, Exported, Format, Imported, export_adapter, import_adapter, parse_format,
                   target_regex)

__all__ = ["Exported", "Format", "Imported", "MODULES", "MODULE_OF", "export_adapter", "import_adapter",
           "parse_format", "target_regex"]
