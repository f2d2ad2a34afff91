"""The regular test images: busybox, multilayer (+ expectations), many-layers,
large and the multi-platform index."""

import hashlib
import random
import subprocess

from .image import Image
from .layers import Layer

BUSYBOX = "/bin/busybox"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"


def busybox_layer(busybox=BUSYBOX):
    """The base rootfs: /bin/busybox, one symlink per applet in /bin, a
    minimal /etc and the usual empty mount-point directories."""
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    layer = Layer("busybox base rootfs")
    layer.dir("bin")
    layer.file("bin/busybox", binary, 0o755)
    for applet in sorted(set(applets) - {"busybox"}):
        layer.symlink("bin/" + applet, "busybox")
    for d in ("dev", "etc", "home", "proc", "sys", "usr", "var"):
        layer.dir(d)
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)
    layer.dir("root", 0o700)
    layer.dir("tmp", 0o1777)
    return layer


def busybox_image(base):
    return Image("busybox", [base])


MULTI_FILES = {
    "keep": "kept from layer 2\n",
    "gone": "deleted by layer 3\n",
    "changed-v1": "first version (layer 2)\n",
    "changed-v2": "second version (layer 3)\n",
    "hard": "hard linked content\n",
    "old-a": "hidden by the opaque dir in layer 4\n",
    "old-b": "also hidden (nested)\n",
    "new": "created with the opaque marker in layer 4\n",
    "suid": "#!/bin/sh\necho setuid\n",
    "user-file": "owned by uid 1000\n",
}


def _h(key):
    return "sha256:" + hashlib.sha256(MULTI_FILES[key].encode()).hexdigest()


def multilayer_image(base):
    """Four layers; see expectations() for what the mounted rootfs holds."""
    l2 = Layer("data: files, links, modes, owners")
    l2.dir("data")
    l2.file("data/keep.txt", MULTI_FILES["keep"])
    l2.file("data/gone.txt", MULTI_FILES["gone"])
    l2.file("data/changed.txt", MULTI_FILES["changed-v1"])
    l2.dir("data/dir-gone")
    l2.file("data/dir-gone/inner.txt", MULTI_FILES["gone"])
    l2.file("data/hard-a", MULTI_FILES["hard"], 0o640)
    l2.hardlink("data/hard-b", "data/hard-a", 0o640)
    l2.symlink("data/link-rel", "keep.txt")
    l2.symlink("data/link-abs", "/data/keep.txt")
    l2.symlink("data/link-dangling", "does-not-exist")
    l2.file("data/suid", MULTI_FILES["suid"], 0o4755)
    l2.dir("data/sgid-dir", 0o2775)
    l2.dir("data/sticky", 0o1777)
    l2.fifo("data/fifo", 0o600)
    l2.file("data/xattr.txt", MULTI_FILES["keep"], xattrs={"user.berth": "test-value"})
    l2.dir("home/user", 0o700, 1000, 1000)
    l2.file("home/user/file.txt", MULTI_FILES["user-file"], 0o600, 1000, 1000)
    l2.symlink("home/user/link", "file.txt", 1000, 1000)
    l2.dir("opaque")
    l2.file("opaque/old-a", MULTI_FILES["old-a"])
    l2.dir("opaque/sub")
    l2.file("opaque/sub/old-b", MULTI_FILES["old-b"])

    l3 = Layer("deletions (whiteouts) and a replaced file")
    l3.dir("data")
    l3.whiteout("data/gone.txt")
    l3.whiteout("data/dir-gone")
    l3.file("data/changed.txt", MULTI_FILES["changed-v2"], 0o600)
    l3.dir("bin")
    l3.whiteout("bin/vi")  # an applet symlink from the base layer

    l4 = Layer("opaque directory")
    l4.dir("opaque", 0o750)
    l4.opaque("opaque")
    l4.file("opaque/new", MULTI_FILES["new"])
    return Image("multilayer", [base, l2, l3, l4], cmd=("sh",))


def expectations():
    """What a test must find in the mounted rootfs of `multilayer`
    (paths absolute in the container; modes include the type-less permission
    and setuid/setgid/sticky bits)."""
    f = lambda key, mode, uid=0, gid=0: {"type": "file", "mode": mode, "uid": uid, "gid": gid, "size": len(MULTI_FILES[key]), "sha256": _h(key), "content": MULTI_FILES[key]}  # noqa: E731
    return {
        "image": "multilayer",
        "layers": [
            "1: busybox base (same blob as the busybox image)",
            "2: /data, /home/user, /opaque files",
            "3: whiteouts of /data/gone.txt, /data/dir-gone, /bin/vi; /data/changed.txt replaced",
            "4: /opaque made opaque (.wh..wh..opq) with one new file",
        ],
        "present": {
            "/bin/busybox": {"type": "file", "mode": "0755", "uid": 0, "gid": 0},
            "/bin/sh": {"type": "symlink", "target": "busybox"},
            "/etc/passwd": {"type": "file", "mode": "0644", "uid": 0, "gid": 0},
            "/tmp": {"type": "dir", "mode": "1777", "uid": 0, "gid": 0},
            "/root": {"type": "dir", "mode": "0700", "uid": 0, "gid": 0},
            "/data/keep.txt": f("keep", "0644"),
            "/data/changed.txt": f("changed-v2", "0600"),
            "/data/hard-a": f("hard", "0640"),
            "/data/hard-b": f("hard", "0640"),
            "/data/link-rel": {"type": "symlink", "target": "keep.txt"},
            "/data/link-abs": {"type": "symlink", "target": "/data/keep.txt"},
            "/data/link-dangling": {"type": "symlink", "target": "does-not-exist"},
            "/data/suid": f("suid", "4755"),
            "/data/sgid-dir": {"type": "dir", "mode": "2775", "uid": 0, "gid": 0},
            "/data/sticky": {"type": "dir", "mode": "1777", "uid": 0, "gid": 0},
            "/data/fifo": {"type": "fifo", "mode": "0600", "uid": 0, "gid": 0},
            "/data/xattr.txt": dict(f("keep", "0644"), xattrs={"user.berth": "test-value"}),
            "/home/user": {"type": "dir", "mode": "0700", "uid": 1000, "gid": 1000},
            "/home/user/file.txt": f("user-file", "0600", 1000, 1000),
            "/home/user/link": {"type": "symlink", "target": "file.txt", "uid": 1000, "gid": 1000},
            "/opaque": {"type": "dir", "mode": "0750", "uid": 0, "gid": 0},
            "/opaque/new": f("new", "0644"),
        },
        "absent": ["/data/gone.txt", "/data/dir-gone", "/data/dir-gone/inner.txt", "/bin/vi", "/opaque/old-a", "/opaque/sub", "/opaque/sub/old-b"],
        "same_inode": [["/data/hard-a", "/data/hard-b"]],
        "dir_listing": {"/opaque": ["new"]},
        "notes": "Whiteout/opaque markers themselves (.wh.*) must never be visible. "
        "xattr check needs a filesystem with user xattrs under the snapshot root. "
        "Running `/bin/busybox cat /data/link-rel` in a chroot prints the keep.txt content.",
    }


def many_layers_image(base, count=120):
    """The base plus `count` layers, layer i adding /layers/file-NNN."""
    layers = [base]
    for i in range(1, count + 1):
        layer = Layer("small file %d" % i)
        layer.dir("layers")
        layer.file("layers/file-%03d" % i, "layer %d\n" % i)
        layers.append(layer)
    return Image("many-layers", layers, cmd=("cat", "/layers/file-%03d" % count))


def _random_bytes(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n)


_VOCAB = None


def _text(rng: random.Random, n: int) -> bytes:
    """Compressible pseudo-text (~3-4x with gzip), `n` bytes."""
    global _VOCAB
    if _VOCAB is None:
        vr = random.Random(7)
        _VOCAB = ["".join(vr.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(vr.randint(2, 10))) for _ in range(4000)]
    words = rng.choices(_VOCAB, k=n // 5 + 16)
    out = bytearray()
    line = 0
    for w in words:
        out += w.encode()
        line += 1
        out += b"\n" if line % 12 == 0 else b" "
        if len(out) >= n:
            break
    return bytes(out[:n])


def large_image(base, total_mb=100):
    """~total_mb MiB across three data layers on top of the base:
    incompressible random files (40%), many small text files (20%) and a few
    large text files (40%)."""
    mib = 1024 * 1024
    total = total_mb * mib
    rnd = Layer("incompressible random files")
    rnd.dir("large")
    rnd.dir("large/random")
    left, i = total * 40 // 100, 0
    while left > 0:
        n = min(8 * mib, left)
        rnd.file("large/random/blob-%03d.bin" % i, _random_bytes("random-%d" % i, n))
        left, i = left - n, i + 1
    small = Layer("many small compressible files")
    small.dir("large")
    small.dir("large/small")
    rng = random.Random(42)
    left, i = total * 20 // 100, 0
    while left > 0:
        if i % 100 == 0:
            small.dir("large/small/d%03d" % (i // 100))
        n = min(rng.randint(512, 64 * 1024), left)
        small.file("large/small/d%03d/f%05d.txt" % (i // 100, i), _text(rng, n))
        left, i = left - n, i + 1
    big = Layer("a few large compressible files")
    big.dir("large")
    big.dir("large/text")
    left, i = total - total * 60 // 100, 0
    while left > 0:
        n = min(16 * mib, left)
        big.file("large/text/doc-%03d.txt" % i, _text(rng, n))
        left, i = left - n, i + 1
    return Image("large", [base, rnd, small, big])


def multiplatform_images(base):
    """linux/amd64 (runnable: busybox + marker) and linux/arm64/v8 (marker only)."""
    amd = Layer("platform marker linux/amd64").dir("etc").file("etc/berth-platform", "linux/amd64\n")
    arm = Layer("platform marker linux/arm64/v8").dir("etc").file("etc/berth-platform", "linux/arm64/v8\n")
    return [
        Image("multiplatform", [base, amd], cmd=("cat", "/etc/berth-platform")),
        Image("multiplatform", [arm], cmd=("cat", "/etc/berth-platform"), arch="arm64", variant="v8"),
    ]
