"""Rewrite customresourcedefinitions.gen.yaml beside this file from Istio's full CRD file.

    curl -fsSLO https://raw.githubusercontent.com/istio/api/COMMIT/kubernetes/customresourcedefinitions.gen.yaml
    python3 tests/specs/istio/refresh.py customresourcedefinitions.gen.yaml

Keeps, unchanged, the CustomResourceDefinition documents of the kinds `meshver render istio`
writes (cli/src/render/istio.rs); add a kind here when the renderer starts writing one.
"""

import re
import sys
from pathlib import Path

KINDS = ("WasmPlugin", "DestinationRule", "VirtualService", "EnvoyFilter")
OUT = Path(__file__).resolve().parent / "customresourcedefinitions.gen.yaml"
HEADER = ("# Istio's CRDs of the kinds `meshver render istio` writes (WasmPlugin, DestinationRule,\n"
          "# VirtualService, EnvoyFilter), copied unchanged from istio/api; see README.md beside this file.\n")


def main(source):
    documents = Path(source).read_text().split("\n---\n")
    kept = {}
    for document in documents:
        kind = re.search(r"^    kind: (\w+)$", document, re.M)
        if kind and kind.group(1) in KINDS:
            kept[kind.group(1)] = document.rstrip("\n")
    missing = [kind for kind in KINDS if kind not in kept]
    if missing:
        sys.exit(f"{source}: no CustomResourceDefinition for {', '.join(missing)}")
    # In the order of the source file, so a refresh shows as a small diff.
    ordered = [d.rstrip("\n") for d in documents if d.rstrip("\n") in kept.values()]
    OUT.write_text(HEADER + "---\n" + "\n---\n".join(ordered) + "\n")
    print(f"{OUT}: {', '.join(KINDS)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
