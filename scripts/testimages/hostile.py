"""Hostile single-image OCI archives (gzip layers unless said otherwise).

Each case is a dict: name, description, expect, stage, image (Image) and an
optional `mutate(plan)` that breaks the serialised plan.

expect:
  "refuse"            import or unpack must fail (no committed snapshot,
                      nothing left after GC);
  "refuse_or_confine" the layer may be refused, or applied with every entry
                      kept inside the snapshot; in both cases nothing outside
                      the snapshot root changes (a canary dir must be
                      byte-for-byte unchanged).
stage: where a correct implementation is expected to notice: "import"
(content ingest / manifest walk) or "unpack" (layer apply).
"""

from .image import Image
from .layers import Layer, compress, sha256

PAYLOAD = "written by a hostile layer\n"


def _img(name, *layers):
    """The case's image; its first layer starts with a `berth-case` file naming
    the case, so no two cases share a layer blob (content already in a store
    from another case would hide a digest problem)."""
    first = Layer(layers[0].comment).file("berth-case", name + "\n")
    first.entries.extend(layers[0].entries)
    return Image("hostile-" + name, [first] + list(layers[1:]), cmd=("true",))


def _single(comment):
    return Layer(comment)


def _flip_last_byte(p):
    layer = p["layers"][-1]
    blob = bytearray(layer["blob"])
    blob[-1] ^= 0xFF
    layer["blob"] = bytes(blob)  # digest and size stay those of the real bytes


def _truncate(kind):
    def mutate(p):
        layer = p["layers"][-1]
        tar = p["image"].layers[-1].tar_bytes()
        blob = compress(tar, kind)
        blob = blob[: len(blob) // 2]
        layer.update(blob=blob, digest=sha256(blob), size=len(blob), media_type="application/vnd.oci.image.layer.v1.tar+" + kind)

    return mutate


def _unknown_media_type(p):
    p["layers"][-1]["media_type"] = "application/vnd.example.unknown.layer.v1+weird"


def _wrong_diff_id(p):
    p["config"]["rootfs"]["diff_ids"][-1] = sha256(b"not the layer")


def _payload_layer(comment):
    return _single(comment).dir("ok").file("ok/file", "harmless\n")


# What Debian's containerd 1.6.20 does with each case (`ctr images import`),
# observed when these archives were written; for reference, not a target.
CONTAINERD_1_6 = {
    "dotdot": "confined (entry cleaned to /escape inside the snapshot)",
    "dotdot-nested": "confined",
    "absolute": "confined",
    "symlink-root-write": "confined (symlink resolved inside the root)",
    "symlink-dotdot-write": "confined",
    "symlink-file-overwrite": "confined (link replaced by the file)",
    "hardlink-abs": "refused: link target missing inside the root",
    "hardlink-dotdot": "refused: link target missing inside the root",
    "hardlink-through-symlink": "refused: link target missing inside the root",
    "symlink-cross-layer": "confined",
    "whiteout-dotdot": "refused: invalid whiteout name",
    "whiteout-escape": "confined",
    "whiteout-opaque-escape": "confined",
    "devices": "applied inside the snapshot",
    "digest-mismatch": "refused at unpack: blob under the manifest's digest not found",
    "truncated-gzip": "refused at unpack: unexpected EOF",
    "truncated-zstd": "refused at unpack: unexpected EOF",
    "unknown-media-type": "refused at unpack: no processor for media-type",
    "diffid-mismatch": "refused at unpack: wrong diff id calculated on extraction",
}


def cases():
    out = []

    def add(name, description, expect, stage, image, mutate=None):
        out.append({"name": name, "description": description, "expect": expect, "stage": stage, "image": image, "mutate": mutate,
                    "containerd_1_6": CONTAINERD_1_6[name]})

    add("dotdot", "regular file `../escape` (and `../../escape`)", "refuse", "unpack",
        _img("dotdot", _single("dotdot").file("../escape", PAYLOAD).file("../../escape", PAYLOAD)))
    add("dotdot-nested", "regular file `sub/../../escape` after dir `sub`", "refuse", "unpack",
        _img("dotdot-nested", _single("nested dotdot").dir("sub").file("sub/../../escape", PAYLOAD)))
    add("absolute", "regular file `/escape` (absolute name); confining means it lands at <snapshot>/escape", "refuse_or_confine", "unpack",
        _img("absolute", _single("absolute").file("/escape", PAYLOAD)))
    add("symlink-root-write", "symlink `evil -> /` then file `evil/tmp/x` written through it", "refuse_or_confine", "unpack",
        _img("symlink-root-write", _single("symlink to root").symlink("evil", "/").file("evil/tmp/x", PAYLOAD)))
    add("symlink-dotdot-write", "symlink `evil -> ../../..` then file `evil/tmp/x` written through it", "refuse_or_confine", "unpack",
        _img("symlink-dotdot-write", _single("symlink up").symlink("evil", "../../..").file("evil/tmp/x", PAYLOAD)))
    add("symlink-file-overwrite", "symlink `pw -> /etc/passwd` then a regular file `pw` (must replace the link, not write through it)", "refuse_or_confine", "unpack",
        _img("symlink-file-overwrite", _single("symlink then file").symlink("pw", "/etc/passwd").file("pw", PAYLOAD)))
    add("hardlink-abs", "hard link `pw` to `/etc/passwd` (absent from the layer)", "refuse_or_confine", "unpack",
        _img("hardlink-abs", _single("hardlink abs").hardlink("pw", "/etc/passwd")))
    add("hardlink-dotdot", "hard link `out` to `../../outside`", "refuse", "unpack",
        _img("hardlink-dotdot", _single("hardlink dotdot").hardlink("out", "../../outside")))
    add("hardlink-through-symlink", "symlink `evil -> /etc` then hard link `x` to `evil/passwd`", "refuse_or_confine", "unpack",
        _img("hardlink-through-symlink", _single("hardlink via symlink").symlink("evil", "/etc").hardlink("x", "evil/passwd")))
    add("symlink-cross-layer", "layer 1 plants `evil -> /` and `evil2 -> ../../..`; layer 2 writes `evil/tmp/x` and `evil2/tmp/y`", "refuse_or_confine", "unpack",
        _img("symlink-cross-layer",
             _single("plant symlinks").symlink("evil", "/").symlink("evil2", "../../.."),
             _single("write through them").file("evil/tmp/x", PAYLOAD).file("evil2/tmp/y", PAYLOAD)))
    add("whiteout-dotdot", "layer 2 has a whiteout named `.wh...` (would delete `..`, the snapshot's parent)", "refuse_or_confine", "unpack",
        _img("whiteout-dotdot", _payload_layer("lower"), _single("whiteout of ..").file(".wh...", b"")))
    add("whiteout-escape", "layer 2 has a whiteout `../.wh.x` (deletes `x` outside the snapshot)", "refuse", "unpack",
        _img("whiteout-escape", _payload_layer("lower"), _single("whiteout outside").file("../.wh.x", b"")))
    add("whiteout-opaque-escape", "layer 2 has an opaque marker `../.wh..wh..opq` (opaque the snapshot's parent)", "refuse", "unpack",
        _img("whiteout-opaque-escape", _payload_layer("lower"), _single("opaque outside").file("../.wh..wh..opq", b"")))
    add("devices", "char device `dev-mem` (c 1 1), block device `dev-sda` (b 8 0), fifo; allowed only inside the snapshot (as root)", "refuse_or_confine", "unpack",
        _img("devices", _single("device nodes").chardev("dev-mem", 1, 1).blockdev("dev-sda", 8, 0).fifo("fifo")))
    add("digest-mismatch", "layer blob bytes differ from the digest in the manifest (same size, last byte flipped)", "refuse", "import",
        _img("digest-mismatch", _payload_layer("content")), _flip_last_byte)
    add("truncated-gzip", "gzip layer cut in half; digest and size match the cut bytes, diff ID is the full tar's", "refuse", "unpack",
        _img("truncated-gzip", _payload_layer("content").file("ok/more", "x" * 200000)), _truncate("gzip"))
    add("truncated-zstd", "zstd layer cut in half; digest and size match the cut bytes, diff ID is the full tar's", "refuse", "unpack",
        _img("truncated-zstd", _payload_layer("content").file("ok/more", "x" * 200000)), _truncate("zstd"))
    add("unknown-media-type", "layer media type `application/vnd.example.unknown.layer.v1+weird`", "refuse", "unpack",
        _img("unknown-media-type", _payload_layer("content")), _unknown_media_type)
    add("diffid-mismatch", "layer decompresses fine but the config's diff ID is wrong", "refuse", "unpack",
        _img("diffid-mismatch", _payload_layer("content")), _wrong_diff_id)
    return out
