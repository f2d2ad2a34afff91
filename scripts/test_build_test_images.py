#!/usr/bin/env python3
"""Self-test of scripts/build-test-images: runs it into temp dirs and checks
determinism, archive structure and layer contents; when Debian's skopeo and
containerd are installed (and we are root), also that they accept the
archives. Run: python3 scripts/test_build_test_images.py -v
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "build-test-images")


def build(out):
    subprocess.run([sys.executable, SCRIPT, out, "--large-mb", "2", "--many-layers", "120"], check=True, capture_output=True)


def tree_digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def read_archive(path):
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}


def layer_members(blob):
    data = blob
    if blob[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(blob)
    elif blob[:4] == b"\x28\xb5\x2f\xfd":
        data = subprocess.run(["zstd", "-q", "-d", "-c", "-"], input=blob, capture_output=True, check=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(m.name, m) for m in tf]


class BuildTestImages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="berth-test-images-")
        cls.out = os.path.join(cls.tmp, "a")
        build(cls.out)
        with open(os.path.join(cls.out, "images.json")) as f:
            cls.doc = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def oci(self, rel):
        files = read_archive(os.path.join(self.out, rel))
        index = json.loads(files["index.json"])
        return files, index

    def test_deterministic(self):
        second = os.path.join(self.tmp, "b")
        build(second)
        self.assertEqual(tree_digests(self.out), tree_digests(second))

    def test_every_variant_written(self):
        for name in ("busybox", "multilayer", "many-layers", "large"):
            variants = self.doc["images"][name]
            self.assertEqual(sorted(variants), sorted(["oci-gzip", "oci-zstd", "docker", "docker-gzip", "docker-zstd"]))
            for rec in variants.values():
                self.assertTrue(os.path.isfile(os.path.join(self.out, rec["file"])), rec["file"])

    def test_oci_layout_blobs_match_digests(self):
        for name, variants in self.doc["images"].items():
            for variant, rec in variants.items():
                if rec["format"] != "oci":
                    continue
                files, index = self.oci(rec["file"])
                self.assertEqual(json.loads(files["oci-layout"]), {"imageLayoutVersion": "1.0.0"})
                ann = index["manifests"][0]["annotations"]
                self.assertEqual(ann["io.containerd.image.name"], rec["ref"])
                self.assertEqual(ann["org.opencontainers.image.ref.name"], variant)
                for member, data in files.items():
                    if member.startswith("blobs/sha256/"):
                        self.assertEqual(hashlib.sha256(data).hexdigest(), member.rsplit("/", 1)[1], member)

    def test_docker_archive_shape(self):
        rec = self.doc["images"]["multilayer"]["docker"]
        files = read_archive(os.path.join(self.out, rec["file"]))
        manifest = json.loads(files["manifest.json"])
        self.assertEqual(manifest[0]["RepoTags"], ["berthtest/multilayer:docker"])
        config = json.loads(files[manifest[0]["Config"]])
        self.assertEqual(config["config"]["Cmd"], ["sh"])
        diff_ids = [("sha256:" + hashlib.sha256(files[layer]).hexdigest()) for layer in manifest[0]["Layers"]]
        self.assertEqual(diff_ids, config["rootfs"]["diff_ids"])

    def test_multilayer_whiteouts_and_opaque(self):
        rec = self.doc["images"]["multilayer"]["oci-zstd"]
        files, _ = self.oci(rec["file"])
        layers = [layer_members(files["blobs/sha256/" + layer["digest"].split(":")[1]]) for layer in rec["layers"]]
        self.assertEqual(len(layers), 4)
        names = [[n for n, _ in layer] for layer in layers]
        self.assertIn("data/.wh.gone.txt", names[2])
        self.assertIn("data/.wh.dir-gone", names[2])
        self.assertIn("opaque/.wh..wh..opq", names[3])
        members = dict(layers[1])
        self.assertEqual(members["data/suid"].mode, 0o4755)
        self.assertEqual(members["data/sticky"].mode, 0o1777)
        self.assertTrue(members["data/hard-b"].islnk())
        self.assertEqual(members["home/user/file.txt"].uid, 1000)
        with open(os.path.join(self.out, "multilayer", "expectations.json")) as f:
            exp = json.load(f)
        self.assertIn("/data/gone.txt", exp["absent"])
        self.assertEqual(rec["chain_ids"][0], rec["diff_ids"][0])

    def test_many_layers_count(self):
        self.assertEqual(len(self.doc["images"]["many-layers"]["oci-gzip"]["layers"]), 121)

    def test_multiplatform_index(self):
        rec = self.doc["images"]["multiplatform"]["oci-gzip"]
        files, index = self.oci(rec["file"])
        self.assertEqual(index["manifests"][0]["mediaType"], "application/vnd.oci.image.index.v1+json")
        inner = json.loads(files["blobs/sha256/" + rec["index_digest"].split(":")[1]])
        archs = [m["platform"]["architecture"] for m in inner["manifests"]]
        self.assertEqual(archs, ["amd64", "arm64"])

    def test_hostile_cases(self):
        cases = {c["name"]: c for c in self.doc["hostile"]}
        files, _ = self.oci(cases["dotdot"]["file"])
        blob = files["blobs/sha256/" + cases["dotdot"]["layers"][0]["digest"].split(":")[1]]
        self.assertIn("../escape", [n for n, _ in layer_members(blob)])
        files, _ = self.oci(cases["digest-mismatch"]["file"])
        digest = cases["digest-mismatch"]["layers"][0]["digest"].split(":")[1]
        self.assertNotEqual(hashlib.sha256(files["blobs/sha256/" + digest]).hexdigest(), digest)
        files, _ = self.oci(cases["truncated-zstd"]["file"])
        blob = files["blobs/sha256/" + cases["truncated-zstd"]["layers"][0]["digest"].split(":")[1]]
        bad = subprocess.run(["zstd", "-q", "-d", "-c", "-"], input=blob, capture_output=True)
        self.assertNotEqual(bad.returncode, 0)
        for c in cases.values():
            self.assertIn(c["expect"], ("refuse", "refuse_or_confine"))

    def test_skopeo_accepts(self):
        if not shutil.which("skopeo"):
            self.skipTest("skopeo not installed")
        for rel in ("busybox/oci-gzip.tar", "multilayer/oci-zstd.tar", "multiplatform/oci-gzip.tar"):
            subprocess.run(["skopeo", "inspect", "--raw", "oci-archive:" + os.path.join(self.out, rel)], check=True, capture_output=True)
        subprocess.run(["skopeo", "inspect", "docker-archive:" + os.path.join(self.out, "busybox/docker.tar")], check=True, capture_output=True)

    def test_containerd_imports_and_runs(self):
        if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
            print("SKIP: containerd/ctr not installed or not root", file=sys.stderr)
            self.skipTest("containerd/ctr not installed or not root")
        with ThrowawayContainerd(self.tmp) as ctrd:
            for rel in ("busybox/oci-gzip.tar", "busybox/docker.tar", "multilayer/oci-zstd.tar", "many-layers/docker-gzip.tar"):
                ctrd.ctr("images", "import", os.path.join(self.out, rel))
            ctrd.ctr("images", "import", "--all-platforms", os.path.join(self.out, "multiplatform/oci-zstd.tar"))
            names = ctrd.ctr("images", "ls", "-q").split()
            self.assertIn("docker.io/berthtest/multilayer:oci-zstd", names)
            self.assertIn("docker.io/berthtest/busybox:docker", names)
            if shutil.which("runc"):
                out = ctrd.ctr("run", "--rm", "docker.io/berthtest/multilayer:oci-zstd", "selftest", "sh", "-c",
                               "cat /data/link-rel; ls /opaque; test -e /data/gone.txt || echo gone")
                self.assertEqual(out.split(), ["kept", "from", "layer", "2", "new", "gone"])


class ThrowawayContainerd:
    """Debian's containerd on private root/state/sockets; stopped by its PID
    and its leftover mounts removed on exit."""

    def __init__(self, parent):
        self.dir = tempfile.mkdtemp(prefix="ctrd-", dir=parent)
        self.sock = os.path.join(self.dir, "c.sock")
        # Own namespace, so the cgroup parents and runc root it leaves are ours to remove.
        self.namespace = "berth-selftest-%d" % os.getpid()

    def __enter__(self):
        d = self.dir
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(
                'version = 2\nroot = "%s/root"\nstate = "%s/state"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n[debug]\n  address = "%s/debug.sock"\n'
                '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' % (d, d, self.sock, self.sock, d, d)
            )
        self.log = open(os.path.join(d, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(self.sock) and subprocess.run(["ctr", "--address", self.sock, "version"], capture_output=True).returncode == 0:
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("containerd did not start; see " + self.log.name)

    def ctr(self, *args):
        res = subprocess.run(["ctr", "--address", self.sock, "--namespace", self.namespace] + list(args), capture_output=True, text=True)
        if res.returncode != 0:
            raise AssertionError("ctr %s failed: %s" % (" ".join(args), res.stderr))
        return res.stdout

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(self.dir + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        leftovers = [os.path.join("/sys/fs/cgroup", h, self.namespace) for h in os.listdir("/sys/fs/cgroup")]
        for d in leftovers + ["/run/containerd/runc/" + self.namespace]:
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as e:
                    print("could not remove %s: %s" % (d, e), file=sys.stderr)
        return False


if __name__ == "__main__":
    unittest.main()
