"""`make oci`: the filter's modules as the OCI images Istio's WasmPlugin pulls (tools/oci/README.md).
The image layouts, their one layer and its media types, the module in it; the same module
giving the same digest; a push to and a pull from a real registry on loopback (Debian's
docker-registry, with skopeo); and the WasmPlugins `render istio` writes for the pushed images,
whose sha256 is the digest Istio's agent compares: the manifest's, as the registry serves it."""

import hashlib
import io
import json
import re
import subprocess
import tarfile
import zlib

import pytest

import harness
from harness import meshver
from test_cli_render import validate_manifests

BUILD = harness.ROOT / "tools/oci/build.sh"
# What `make oci` builds: image name -> module.
MODULES = {"meshver": harness.WASM, "meshver-body": harness.WASM.with_name("meshver_body.wasm")}
TAG = "0.1.0-test"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# The compat variant of the Wasm image spec in its OCI form: one gzipped tar layer, annotated.
COMPAT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
COMPAT_ANNOTATION = {"module.wasm.image/variant": "compat"}


def build(out, names=MODULES):
    """Run tools/oci/build.sh as `make oci` does; its output."""
    images = [f"{name}={MODULES[name]}" for name in names]
    result = subprocess.run([str(BUILD), str(out), TAG, *images], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the folder of the image layouts, what the build printed)."""
    out = tmp_path_factory.mktemp("oci")
    return out, build(out)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def blob(layout, descriptor):
    """The bytes of the blob a descriptor names, checked against its digest and size."""
    algorithm, hex_digest = descriptor["digest"].split(":")
    assert algorithm == "sha256"
    data = (layout / "blobs/sha256" / hex_digest).read_bytes()
    assert (sha256(data), len(data)) == (hex_digest, descriptor["size"]), descriptor
    return data


def tagged_manifest(layout, tag=TAG):
    """(descriptor, manifest bytes) of the image the layout's index tags `tag`."""
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    tagged = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    assert len(tagged) == 1, index
    return tagged[0], blob(layout, tagged[0])


def plugin_wasm(layer):
    """The one file of a compat layer (gzipped tar): Istio takes plugin.wasm from it."""
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as archive:
        files = [member for member in archive.getmembers() if member.isfile()]
        assert [member.name for member in files] == ["plugin.wasm"], archive.getnames()
        return archive.extractfile(files[0]).read()


def test_each_module_is_a_compat_image_of_one_layer(built):
    out, printed = built
    for name, module in MODULES.items():
        layout = out / name
        assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
        descriptor, manifest_bytes = tagged_manifest(layout)
        assert descriptor["mediaType"] == OCI_MANIFEST
        manifest = json.loads(manifest_bytes)
        assert manifest["schemaVersion"] == 2 and manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
        assert manifest["config"]["mediaType"] == OCI_CONFIG
        assert manifest["annotations"] == COMPAT_ANNOTATION
        [layer_descriptor] = manifest["layers"]
        assert layer_descriptor["mediaType"] == COMPAT_LAYER
        layer = blob(layout, layer_descriptor)
        assert plugin_wasm(layer) == module.read_bytes(), f"{name}: the layer holds another module"
        config = json.loads(blob(layout, manifest["config"]))
        # The config names the layer by the sha256 of its tar, as OCI requires.
        assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{sha256(zlib.decompress(layer, 31))}"]}
        assert (config["os"], config["architecture"]) == ("wasip1", "wasm")
        # What `make oci` prints: the image digest render's --image-digest takes, and the module's.
        block = re.search(rf"^{re.escape(str(layout))}:{TAG}\n  image digest:  (\S+)\n  module sha256: (\S+) ",
                          printed, re.M)
        assert block, printed
        assert block.groups() == (descriptor["digest"], sha256(module.read_bytes()))


def test_the_same_module_gives_the_same_image_digest(built, tmp_path):
    """A WasmPlugin rendered with a digest stays right for a rebuild of the same module."""
    out, _ = built
    build(tmp_path, ["meshver"])
    assert tagged_manifest(tmp_path / "meshver")[0] == tagged_manifest(out / "meshver")[0]


@pytest.fixture
def registry(tmp_path):
    """A real registry (Debian's docker-registry) on 127.0.0.1, storage in tmp_path: "host:port"."""
    port = harness.free_port()
    config = tmp_path / "registry.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    with open(tmp_path / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    harness._children.append(proc)
    try:
        harness.wait_for(lambda: harness.http1("GET", f"http://127.0.0.1:{port}/v2/", timeout=1).status == 200,
                         30, f"docker-registry on port {port}", proc)
        yield f"127.0.0.1:{port}"
    finally:
        harness._stop_process(proc)


def skopeo(*args):
    result = subprocess.run(["skopeo", *map(str, args)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_pushed_to_and_pulled_from_a_registry_and_rendered(built, registry, tmp_path):
    out, _ = built
    digests = {}
    for name, module in MODULES.items():
        descriptor, manifest_bytes = tagged_manifest(out / name)
        remote = f"docker://{registry}/{name}:{TAG}"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{out / name}:{TAG}", remote)
        # Istio's agent takes the sha256 of the manifest the registry serves: the layout's, unchanged.
        served = harness.http1("GET", f"http://{registry}/v2/{name}/manifests/{TAG}", {"Accept": OCI_MANIFEST})
        assert served.status == 200 and served.body == manifest_bytes
        assert served.header("docker-content-digest") == descriptor["digest"]
        assert skopeo("inspect", "--tls-verify=false", "--raw", remote) == manifest_bytes
        # Pulled back into a fresh layout: the same image, the same module.
        pulled = tmp_path / f"pulled-{name}"
        skopeo("copy", "--src-tls-verify=false", remote, f"oci:{pulled}:{TAG}")
        assert tagged_manifest(pulled)[1] == manifest_bytes
        [layer] = json.loads(manifest_bytes)["layers"]
        assert plugin_wasm(blob(pulled, layer)) == module.read_bytes()
        digests[name] = descriptor["digest"]

    image = {name: f"oci://{registry}/{name}:{TAG}" for name in MODULES}
    result = meshver("render", "istio", "examples/catalog-served.json",
                     "--image", image["meshver"], "--image-digest", digests["meshver"],
                     "--body-image", image["meshver-body"], "--body-image-digest", digests["meshver-body"])
    assert result.returncode == 0, result.stderr
    plugins = [d["spec"] for d in validate_manifests(result.stdout) if d["kind"] == "WasmPlugin"]
    expected = {"meshver": (image["meshver"], digests["meshver"]),
                "meshver-body": (image["meshver-body"], digests["meshver-body"])}
    assert {p["pluginName"] for p in plugins} == set(expected)
    for plugin in plugins:
        url, digest = expected[plugin["pluginName"]]
        assert (plugin["url"], f"sha256:{plugin['sha256']}") == (url, digest), plugin["pluginName"]
