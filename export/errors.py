"""Errors of the export tool: each one is printed as a single line naming the file or key."""


class ExportError(Exception):
    """Base class: the CLI prints ``lofi-export: error: <message>`` and exits 1."""


class CheckpointError(ExportError):
    """The checkpoint folder is missing, incomplete, corrupt or has the wrong keys, shapes or dtypes."""
