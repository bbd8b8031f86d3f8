"""The one atomic writer: checkpoints, weights and result files all go through :func:`write_atomic`.

The bytes go to a temporary file of a unique name (``tempfile.mkstemp``) in the target's folder,
are flushed to disk, get the usual file mode (0666 less the umask, e.g. 0644) and replace the
target with ``os.replace``: a crash or a second writer leaves the old file or a new one, never
half a file, and two writers never share a temporary file.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["write_atomic", "torch_save_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())               # mkstemp's 0600 is for secrets
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def torch_save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_atomic(path, buf.getvalue())
