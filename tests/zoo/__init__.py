"""The conformance zoo: models users bring, built and trained here on real offline data (see models.py)."""
