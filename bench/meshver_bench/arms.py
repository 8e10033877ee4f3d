"""The Envoy configs of the benchmark: the upstream, and the front Envoy of each arm.

  A   native: route config alone (regex header/path/query matches, regex_rewrite,
      header_mutation for the query parameter, direct_response for rejects)
  B   lua: envoy.filters.http.lua running bench/lua/meshver.lua on the demo catalog
  C   meshver: meshver.wasm on V8 with the demo catalog
  C0  empty wasm: arm A's routes behind a proxy-wasm filter that does nothing
  N   native meshver: target/dynamic-modules/libmeshver.so, Envoy's dynamic module filter as
      `meshver render envoy --host native` writes it, the demo catalog
  N0  empty native module: arm A's routes behind the same filter loading a module that does
      nothing (bench/empty-native)

Arms B, C and N route on the route config `meshver render envoy` writes; arm A's routes send
each version class to the route action (and lifecycle headers) rendered for its route key,
so that after the decision every arm does the same work.
"""

import copy
import json
import re

from .env import CATALOG, EMPTY_NATIVE_NAME, EMPTY_WASM, LUA, harness

ARMS = ["A", "B", "C0", "C", "N0", "N"]
ARM_NAMES = {"A": "native", "B": "lua", "C0": "empty wasm", "C": "meshver", "N0": "empty native module",
             "N": "meshver native"}

# Arm A's version classes for examples/catalog.json, written by hand: which requested
# versions each line or deployment serves under semver caret rules (1.4.0 | 2.0.3 2.1.0 for
# user, 1.2.0 | 2.0.0 for order), the version header it sets, and the major a gRPC package
# names. The route key of a class is the compiled catalog's. The answer check proves the
# classes agree with meshver on the mix.
COMP = r"(0|[1-9][0-9]{0,8})"
NATIVE_CLASSES = {
    "user": {"paths": r"/(register|login|acme\.user\.).*", "classes": [
        (("line", 1), "1", rf"1|1\.[0-4]|1\.[0-3]\.{COMP}|1\.4\.0", 1),
        (("line", 2), "2", r"2|2\.0|2\.0\.[0-3]", 2),
        (("deployment", "2.1.0"), "2.1", r"2\.1|2\.1\.0|2\.0\.([4-9]|[1-9][0-9]{1,8})", None)]},
    "order": {"paths": r"/(order|acme\.order\.).*", "classes": [
        (("line", 1), "1", rf"1|1\.[0-2]|1\.[01]\.{COMP}|1\.2\.0", 1),
        (("line", 2), "2", r"2|2\.0|2\.0\.0", 2)]},
}


# ---------------------------------------------------------------- building blocks

def hcm(stat_prefix, route_config, http_filters):
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix, "codec_type": "AUTO", "route_config": route_config,
        "http_filters": http_filters + [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}


def listener(name, port, filters):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [filters]}]}


def admin(port):
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def set_header(key, value):
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def wasm_filter(name, path, configuration):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": name,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": configuration},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(path)}}}}}}


def url_of(config):
    """The URL of a config's first listener."""
    port = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the upstream

def upstream_config(admin_port, ports):
    """One listener per deployment (route key -> port); each answers 200 with a small JSON
    body, its own name, and the path and x-api-version it received."""
    listeners = []
    for name, port in ports.items():
        route = {"match": {"prefix": "/"}, "direct_response": {
            "status": 200, "body": {"inline_string": json.dumps({"deployment": name, "ok": True})}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/json"},
                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-upstream", "value": name}},
                {"header": {"key": "x-seen-path", "value": "%REQ(:PATH)%"}},
                {"header": {"key": "x-seen-version", "value": "%REQ(X-API-VERSION)%"}}]}
        rc = {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}]}
        listeners.append(listener(name, port, hcm(name.replace(".", "_"), rc, [])))
    return {"admin": admin(admin_port), "static_resources": {"listeners": listeners}}


# ---------------------------------------------------------------- arm A: route config alone

def _class_route_key(service, target):
    """The route key of a class's target, ("line", major) or ("deployment", version)."""
    kind, which = target
    if kind == "line":
        return service["lines"][which]["route"]
    return next(d["route"] for d in service["deployments"] if d["version"] == which)


def native_routes(services, route_config, keyed):
    """Arm A: the whole job in route config, as far as route config can do it. `keyed` maps a
    route key to its rendered route (catalog.keyed_routes); `route_config` is the rendered one,
    whose virtual host (name, domains, headers removed) arm A keeps."""
    routes = []
    for s in services:
        spec = NATIVE_CLASSES[s["name"]]
        paths, vh, qp = spec["paths"], s["version_header"], s["query_param"]
        problem = json.dumps({"type": "urn:meshver:problem:unsupported-version", "title": "Unsupported API version",
                              "status": 400, "detail": "No deployment serves the requested version.",
                              "service": s["name"], "supported_versions": s["versions"]})
        reject = {"direct_response": {"status": 400, "body": {"inline_string": problem}},
                  "response_headers_to_add": [set_header("content-type", "application/problem+json"),
                                              set_header("api-supported-versions", ", ".join(s["versions"])),
                                              set_header("cache-control", "no-store")]}
        # A gRPC client cannot read problem+json: HTTP 200 with the gRPC status (UNIMPLEMENTED,
        # as meshver answers an unsupported version) and the problem type as metadata.
        grpc_reject = {"direct_response": {"status": 200}, "response_headers_to_add": [
            set_header("content-type", "application/grpc"), set_header("grpc-status", "12"),
            set_header("grpc-message", "No deployment serves the requested version."),
            set_header("meshver-problem-type", "urn:meshver:problem:unsupported-version"),
            set_header("api-supported-versions", ", ".join(s["versions"]))]}

        def forward(key, version, extra=None):
            # Where the route key goes, and the response headers it adds, as rendered.
            rendered = keyed[key]
            r = {"route": copy.deepcopy(rendered["route"]), "request_headers_to_add": [set_header(vh, version)],
                 "response_headers_to_add": copy.deepcopy(rendered.get("response_headers_to_add", []))}
            weighted = r["route"].get("weighted_clusters")
            if weighted and s.get("sticky_header"):
                # Sticky clients: Envoy hashes the client's key (route hash policy) instead of
                # reading the number meshver writes; without a key it picks at random.
                weighted.pop("header_name", None)
                weighted["use_hash_policy"] = True
                r["route"]["hash_policy"] = [{"header": {"header_name": s["sticky_header"]}}]
            r["route"].update(extra or {})
            return r

        def regex(r):
            return {"regex": r}

        classes = [(_class_route_key(s, target), version, cls, major)
                   for target, version, cls, major in spec["classes"]]
        for source in s["sources"]:
            for key, version, cls, major in classes:
                if source == "header":
                    m = {"safe_regex": regex(paths), "headers": [
                        {"name": vh, "string_match": {"safe_regex": regex(rf"\s*[vV]?({cls})\s*")}}]}
                    routes.append({"match": m, **forward(key, version)})
                elif source == "path":
                    m = {"safe_regex": regex(rf"/[vV]({cls}){paths}")}
                    routes.append({"match": m, **forward(key, version, {"regex_rewrite": {
                        "pattern": regex(r"^/[vV][0-9.]+"), "substitution": ""}})})
                elif source == "suffix":
                    m = {"safe_regex": regex(rf"{paths}_[vV]({cls})")}
                    routes.append({"match": m, **forward(key, version, {"regex_rewrite": {
                        "pattern": regex(r"_[vV][0-9.]+$"), "substitution": ""}})})
                elif source == "accept":
                    vendor = re.escape(s["accept_vendor"]) if s.get("accept_vendor") else r"[^/+]*"
                    m = {"safe_regex": regex(paths), "headers": [{"name": "accept", "string_match": {"safe_regex": regex(
                        rf".*vnd\.{vendor}\.[vV]({cls})([+;,].*)?|.*;\s*[vV]ersion\s*=\s*\"?[vV]?({cls})\"?\s*([;,].*)?")}}]}
                    routes.append({"match": m, **forward(key, version)})
                elif source == "query":
                    m = {"safe_regex": regex(paths), "query_parameters": [
                        {"name": qp, "string_match": {"safe_regex": regex(cls)}}]}
                    r = forward(key, version)
                    r["typed_per_filter_config"] = {"envoy.filters.http.header_mutation": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
                        "mutations": {"query_parameter_mutations": [{"remove": qp}]}}}
                    routes.append({"match": m, **r})
                elif source == "grpc" and major is not None:
                    m = {"safe_regex": regex(rf"/(acme\.{s['name']}\.)[^/]*\.[vV]{major}\.[^/]*/.*"
                                             rf"|/(acme\.{s['name']}\.)[vV]{major}\.[^/]*/.*"),
                         "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}
                    routes.append({"match": m, **forward(key, version)})
            # The source holds something, but no deployment serves it (or it is no version).
            if source == "header":
                m = {"safe_regex": regex(paths), "headers": [{"name": vh, "present_match": True}]}
            elif source == "path":
                m = {"safe_regex": regex(rf"/[vV][0-9][0-9.]*{paths}")}
            elif source == "suffix":
                m = {"safe_regex": regex(rf"{paths}_[vV][0-9][0-9.]*")}
            elif source == "accept":
                m = {"safe_regex": regex(paths), "headers": [{"name": "accept", "string_match": {
                    "safe_regex": regex(r".*vnd\.[^/+]*\.[vV][0-9].*|.*;\s*[vV]ersion\s*=.*")}}]}
            elif source == "query":
                m = {"safe_regex": regex(paths), "query_parameters": [{"name": qp, "present_match": True}]}
            else:
                m = {"safe_regex": regex(r"/[^/]*\.[vV][0-9]+\.[^/]*/.*"), "headers": [
                    {"name": "content-type", "string_match": {"prefix": "application/grpc"}}]}
                routes.append({"match": m, **grpc_reject})
                continue
            routes.append({"match": m, **reject})
        # No version anywhere: the default.
        default_key = next(k for k, v, _, _ in classes if v == s["default"])
        routes.append({"match": {"safe_regex": regex(paths)}, **forward(default_key, s["default"])})
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    vhost = route_config["virtual_hosts"][0]
    return {"name": route_config["name"], "virtual_hosts": [{
        "name": vhost["name"], "domains": vhost["domains"], "routes": routes,
        "request_headers_to_remove": vhost["request_headers_to_remove"]}]}


# ---------------------------------------------------------------- arm B: Lua

def lua_catalog(services, route_header):
    """The compiled catalog as the Lua table bench/lua/meshver.lua reads."""
    def lua(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"[{lua(k)}] = {lua(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "{" + ", ".join(lua(x) for x in v) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if v is None:
            return "nil"
        return json.dumps(v)  # a JSON string is a valid Lua string literal here (ASCII)

    def parts(version):
        return dict(zip(("major", "minor", "patch"), (int(x) for x in version.split("."))))

    out = []
    for s in services:
        svc = {"name": s["name"], "prefixes": s["prefixes"], "sources": s["sources"],
               "version_header": s["version_header"], "query_param": s["query_param"],
               "supported": s["versions"],
               "deployments": [{"route": d["route"], **parts(d["version"])} for d in s["deployments"]],
               "lines": {major: {"route": line["route"], "size": len(line["deployments"])}
                         for major, line in s["lines"].items()},
               "default": parts(s["default"])}
        if s.get("accept_vendor"):
            svc["accept_vendor"] = s["accept_vendor"]
        if s.get("sticky_header"):
            svc["sticky_header"] = s["sticky_header"]
        out.append(svc)
    return "CATALOG = " + lua({"route_header": route_header, "services": out}) + "\n"


# ---------------------------------------------------------------- the front Envoy of an arm

class Arms:
    """The front Envoy config of each arm, from the compiled catalog and the rendered routes.

    services: catalog.services(); route_header: the compiled catalog's; route_config: the
    rendered route config and clusters (catalog.rendered_routes_and_clusters); keyed:
    catalog.keyed_routes of the routes;
    native_filter: arm N's filter (catalog.rendered_native_filter).
    """

    def __init__(self, services, route_header, route_config, keyed, clusters, meshver_wasm, native_filter=None):
        self.services, self.route_header = services, route_header
        self.route_config, self.keyed = route_config, keyed
        self.clusters, self.meshver_wasm = clusters, meshver_wasm
        self.native_filter = native_filter

    def front(self, arm):
        """Arm `arm`'s front Envoy (listener and admin on free ports)."""
        mutation = {"name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"}}
        if arm == "A":
            filters, routes = [mutation], native_routes(self.services, self.route_config, self.keyed)
        elif arm == "C0":
            filters = [wasm_filter("empty", EMPTY_WASM, ""), mutation]
            routes = native_routes(self.services, self.route_config, self.keyed)
        elif arm == "C":
            filters, routes = [wasm_filter("meshver", self.meshver_wasm, CATALOG.read_text())], self.route_config
        elif arm == "N":
            filters, routes = [self.native_filter], self.route_config
        elif arm == "N0":
            # Arm N's filter as rendered, loading the empty module with an empty config.
            empty = copy.deepcopy(self.native_filter)
            empty["typed_config"]["dynamic_module_config"]["name"] = EMPTY_NATIVE_NAME
            empty["typed_config"]["filter_config"]["value"] = ""
            filters = [empty, mutation]
            routes = native_routes(self.services, self.route_config, self.keyed)
        elif arm == "B":
            code = lua_catalog(self.services, self.route_header) + LUA.read_text()
            filters = [{"name": "envoy.filters.http.lua", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": code}}}]
            routes = self.route_config
        else:
            raise ValueError(f"no arm {arm}")
        # The same runtime for every arm: arm A's accept regexes exceed RE2's default program size.
        runtime = {"layers": [{"name": "static", "static_layer": {"re2.max_program_size.error_level": 1000}}]}
        return {"admin": admin(harness.free_port()), "layered_runtime": runtime, "static_resources": {
            "listeners": [listener("front", harness.free_port(), hcm("bench", routes, filters))],
            "clusters": self.clusters}}
