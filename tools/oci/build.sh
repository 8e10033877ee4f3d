#!/bin/sh
# Wasm modules as OCI images that Istio's WasmPlugin pulls (`url: oci://…`), built without a
# daemon by Debian's umoci. README.md beside this script says which image form and why.
#
# usage: tools/oci/build.sh OUT TAG NAME=MODULE...
#   one OCI image layout per module, OUT/NAME, its image tagged TAG; then per image its digest
#   (what a WasmPlugin's `sha256` holds for an oci:// url), the module's sha256, and how to push it.
set -eu

if [ $# -lt 3 ]; then
	echo "usage: $0 OUT TAG NAME=MODULE..." >&2
	exit 2
fi
out=$1
tag=$2
shift 2

# A fixed time in every timestamp the image records: the same module gives the same digest.
epoch=1970-01-01T00:00:00Z
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for image in "$@"; do
	name=${image%%=*}
	module=${image#*=}
	layout=$out/$name
	rm -rf "$layout"
	mkdir -p "$out"
	umoci init --layout "$layout"
	umoci new --image "$layout:$tag"
	# One layer holding plugin.wasm. Through unpack and repack: umoci 0.4.7's `insert` writes
	# a tar without its end blocks, which Go's reader takes and GNU tar refuses.
	bundle=$work/$name
	umoci unpack --rootless --image "$layout:$tag" "$bundle"
	cp "$module" "$bundle/rootfs/plugin.wasm"
	chmod 0644 "$bundle/rootfs/plugin.wasm"
	touch -d "$epoch" "$bundle/rootfs/plugin.wasm" "$bundle/rootfs"
	umoci repack --image "$layout:$tag" --history.created "$epoch" \
		--history.created_by "make oci: $(basename "$module") as plugin.wasm" "$bundle"
	# The module's own target, not the build machine's (an image from scratch gets the host's;
	# umoci unpacks only a linux one, so this comes last).
	umoci config --image "$layout:$tag" --no-history --created "$epoch" --os wasip1 --architecture wasm \
		--manifest.annotation module.wasm.image/variant=compat
	umoci gc --layout "$layout"
	digest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")
	module_sha256=$(sha256sum "$module" | cut -d' ' -f1)
	echo "$layout:$tag"
	echo "  image digest:  $digest"
	echo "  module sha256: $module_sha256 ($module)"
	echo "  push:          skopeo copy oci:$layout:$tag docker://REGISTRY/$name:$tag"
done
