"""Targets: where a sync writes (a local folder, the HF cache, later an SSH host)."""
