"""hfsync: rsync-style incremental sync for Hugging Face Hub repositories."""

__version__ = "0.1.0"
