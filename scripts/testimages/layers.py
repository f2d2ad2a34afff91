"""Deterministic layer tars: an ordered list of tar entries, written with fixed
mtimes and owners so the same input always gives the same bytes (and digests).

Paths are written exactly as given (no normalisation), so hostile layers can
carry `../x`, `/x` and odd whiteout names on purpose.
"""

import gzip
import hashlib
import io
import subprocess
import tarfile

# 2023-11-14T22:13:20Z: every entry, config `created` and archive member uses it.
MTIME = 1700000000
CREATED = "2023-11-14T22:13:20Z"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer:
    """An ordered set of tar entries making up one image layer."""

    def __init__(self, comment: str):
        self.comment = comment
        self.entries = []  # (TarInfo, bytes | None)

    def _info(self, name, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid = uid
        ti.gid = gid
        ti.uname = ""
        ti.gname = ""
        ti.mtime = MTIME
        return ti

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries.append((self._info(path, tarfile.DIRTYPE, mode, uid, gid), None))
        return self

    def file(self, path, data, mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in sorted(xattrs.items())}
        self.entries.append((ti, data))
        return self

    def symlink(self, path, target, uid=0, gid=0):
        ti = self._info(path, tarfile.SYMTYPE, 0o777, uid, gid)
        ti.linkname = target
        self.entries.append((ti, None))
        return self

    def hardlink(self, path, target, mode=0o644):
        """A hard link; `mode` should repeat the target's (as tar writes it)."""
        ti = self._info(path, tarfile.LNKTYPE, mode)
        ti.linkname = target
        self.entries.append((ti, None))
        return self

    def whiteout(self, path):
        """Delete `path` (from a lower layer): an empty `DIR/.wh.NAME` file."""
        parent, _, name = path.rpartition("/")
        return self.file((parent + "/" if parent else "") + WHITEOUT_PREFIX + name, b"", 0o644)

    def opaque(self, dirpath):
        """Hide everything lower layers put in `dirpath`."""
        return self.file(dirpath.rstrip("/") + "/" + OPAQUE_MARKER, b"", 0o644)

    def chardev(self, path, major, minor, mode=0o666):
        ti = self._info(path, tarfile.CHRTYPE, mode)
        ti.devmajor, ti.devminor = major, minor
        self.entries.append((ti, None))
        return self

    def blockdev(self, path, major, minor, mode=0o660):
        ti = self._info(path, tarfile.BLKTYPE, mode)
        ti.devmajor, ti.devminor = major, minor
        self.entries.append((ti, None))
        return self

    def fifo(self, path, mode=0o644):
        self.entries.append((self._info(path, tarfile.FIFOTYPE, mode), None))
        return self

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for ti, data in self.entries:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    """Compress a layer tar. gzip: level 6, no name, mtime 0 (byte-stable).
    zstd: Debian's `zstd` CLI, level 3, single-threaded."""
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "zstd":
        res = subprocess.run(["zstd", "-q", "-3", "-c", "-"], input=data, capture_output=True, check=True)
        return res.stdout
    raise ValueError("unknown compression %r" % kind)


def archive_tar(members) -> bytes:
    """A plain archive (OCI layout or docker save) from (name, bytes) pairs;
    directories are implied and written first, in sorted order."""
    buf = io.BytesIO()
    dirs = set()
    for name, _ in members:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted(dirs):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tf.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, MTIME
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
