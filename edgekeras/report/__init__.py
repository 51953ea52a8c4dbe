"""Human-readable renderings of reports and model cards (text tables; the CLI prints them)."""

from .text import compress_table, human_bytes

__all__ = ["compress_table", "human_bytes"]
