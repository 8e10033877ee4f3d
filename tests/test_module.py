"""The module `make build` produces: Envoy calls into the VM only for a callback the module
exports, so the build leaves exactly the callbacks src/host implements (tools/trim-exports)."""

from harness import WASM


def leb128(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def sections(module):
    """(id, payload) of each section, read by the wasm binary format's framing alone."""
    assert module[:4] == b"\0asm", "not a wasm module"
    at = 8
    while at < len(module):
        section_id = module[at]
        size, start = leb128(module, at + 1)
        yield section_id, module[start:start + size]
        at = start + size


def names(module):
    """The export names, and the custom sections by name."""
    exports, custom = [], {}
    for section_id, payload in sections(module):
        if section_id == 0:
            length, at = leb128(payload, 0)
            custom[payload[at:at + length].decode()] = payload[at + length:]
        elif section_id == 7:
            count, at = leb128(payload, 0)
            for _ in range(count):
                length, at = leb128(payload, at)
                exports.append(payload[at:at + length].decode())
                _, at = leb128(payload, at + length + 1)  # kind byte, then the index
    return exports, custom


def test_the_module_exports_only_the_callbacks_meshver_implements():
    exports, custom = names(WASM.read_bytes())
    listed = set(custom["meshver.callbacks"].decode().split())
    callbacks = {name for name in exports if name.startswith("proxy_on_")}
    assert callbacks == listed, f"exported {sorted(callbacks)}, listed {sorted(listed)}"
    # A request enters the VM three times (answers carry lifecycle headers from the route
    # config, not from a response callback); then the host's allocator and the root's two.
    assert listed == {"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_delete",
                      "proxy_on_memory_allocate", "proxy_on_configure", "proxy_on_tick"}
    # What the SDK exports besides stays: the ABI version marker and the reactor's initialiser.
    assert "proxy_abi_version_0_2_1" in exports and "_initialize" in exports, exports
