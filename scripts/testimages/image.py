"""Image assembly: layers -> config -> manifest, and the two archive formats
(OCI image layout tar, `docker save` tar).

An image is first turned into a *plan* (config dict plus per-layer blob,
digest, size, media type and diff ID). Hostile cases edit the plan (swap
bytes, truncate, change the media type) before it is written out.
"""

import hashlib
import json

from .layers import CREATED, archive_tar, compress, sha256

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_IMAGE_NAME = "io.containerd.image.name"

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

_blob_cache = {}


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def chain_ids(diff_ids):
    out = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(sha256((out[-1] + " " + d).encode()))
    return out


class Image:
    """An image before serialisation: ordered layers plus its run config."""

    def __init__(self, name, layers, cmd=("sh",), env=None, arch="amd64", variant=None, extra_config=None):
        self.name = name
        self.layers = layers
        self.cmd = list(cmd)
        self.env = list(env or DEFAULT_ENV)
        self.arch = arch
        self.variant = variant
        self.extra_config = extra_config or {}

    def platform(self):
        p = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            p["variant"] = self.variant
        return p


def layer_tar(layer):
    key = id(layer)
    if key not in _blob_cache:
        tar = layer.tar_bytes()
        _blob_cache[key] = (layer, tar, {})
    return _blob_cache[key][1]


def layer_blob(layer, compression):
    tar = layer_tar(layer)
    _, _, blobs = _blob_cache[id(layer)]
    if compression not in blobs:
        blobs[compression] = compress(tar, compression)
    return blobs[compression]


def plan(image, compression):
    """Everything needed to write `image` with layers compressed as given."""
    layers = []
    for layer in image.layers:
        blob = layer_blob(layer, compression)
        layers.append(
            {
                "media_type": MT_OCI_LAYER[compression],
                "blob": blob,
                "digest": sha256(blob),
                "size": len(blob),
                "diff_id": sha256(layer_tar(layer)),
                "tar_size": len(layer_tar(layer)),
                "comment": layer.comment,
            }
        )
    cfg = {"Env": image.env, "Cmd": image.cmd, "WorkingDir": "/"}
    cfg.update(image.extra_config)
    config = {
        "created": CREATED,
        "architecture": image.arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layers]},
        "history": [{"created": CREATED, "created_by": "berth build-test-images: " + layer["comment"]} for layer in layers],
    }
    if image.variant:
        config["variant"] = image.variant
    return {"image": image, "compression": compression, "config": config, "layers": layers}


def serialise(p):
    """Config and manifest bytes plus all blobs (digest -> bytes) of a plan."""
    config = canonical_json(p["config"])
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer["media_type"], "digest": layer["digest"], "size": layer["size"]} for layer in p["layers"]],
    }
    manifest_bytes = canonical_json(manifest)
    blobs = {sha256(config): config, sha256(manifest_bytes): manifest_bytes}
    for layer in p["layers"]:
        blobs.setdefault(layer["digest"], layer["blob"])
    return config, manifest_bytes, blobs


def record(p, config, manifest):
    """The images.json entry describing what a plan holds."""
    diff_ids = p["config"]["rootfs"]["diff_ids"]
    return {
        "platform": p["image"].platform(),
        "manifest_digest": sha256(manifest),
        "config_digest": sha256(config),
        "layers": [
            {"digest": layer["digest"], "size": layer["size"], "media_type": layer["media_type"], "diff_id": layer["diff_id"],
             "tar_size": layer["tar_size"], "comment": layer["comment"]}
            for layer in p["layers"]
        ],
        "diff_ids": diff_ids,
        "chain_ids": chain_ids(diff_ids),
        "uncompressed_size": sum(layer["tar_size"] for layer in p["layers"]),
    }


def oci_archive(path, ref, top_desc, blobs):
    """Write an OCI image layout tar whose index.json names `top_desc` with
    both the OCI ref.name (the tag) and containerd's image name annotation."""
    tag = ref.rsplit(":", 1)[1]
    desc = dict(top_desc)
    desc["annotations"] = {ANN_IMAGE_NAME: ref, ANN_REF_NAME: tag}
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [desc]}
    members = [("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})), ("index.json", canonical_json(index))]
    for digest in sorted(blobs):
        members.append(("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest]))
    with open(path, "wb") as f:
        f.write(archive_tar(members))


def write_oci_image(path, ref, p):
    config, manifest, blobs = serialise(p)
    top = {"mediaType": MT_OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}
    oci_archive(path, ref, top, blobs)
    return record(p, config, manifest)


def write_oci_index(path, ref, plans):
    """A multi-platform image: index.json -> image index -> one manifest per plan."""
    blobs, manifests, records = {}, [], []
    for p in plans:
        config, manifest, b = serialise(p)
        blobs.update(b)
        manifests.append({"mediaType": MT_OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest), "platform": p["image"].platform()})
        records.append(record(p, config, manifest))
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests})
    blobs[sha256(index)] = index
    oci_archive(path, ref, {"mediaType": MT_OCI_INDEX, "digest": sha256(index), "size": len(index)}, blobs)
    return {"index_digest": sha256(index), "manifests": records}


def write_docker_image(path, ref, p):
    """A `docker save` archive: manifest.json (RepoTags), <config>.json and
    <id>/layer.tar per layer. The layer files hold the plan's blob bytes, so a
    gzip/zstd plan gives compressed layer.tar files (containerd detects it)."""
    config = canonical_json(p["config"])
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members = [(config_name, config)]
    layer_names = []
    for layer in p["layers"]:
        name = layer["digest"].split(":", 1)[1] + "/layer.tar"
        if name not in layer_names:
            members.append((name, layer["blob"]))
        layer_names.append(name)
    repo_tag = ref[len("docker.io/"):] if ref.startswith("docker.io/") else ref
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    members.insert(0, ("manifest.json", canonical_json(manifest)))
    with open(path, "wb") as f:
        f.write(archive_tar(members))
    rec = record(p, config, b"")
    del rec["manifest_digest"]  # containerd writes the docker manifest itself on import
    return rec
