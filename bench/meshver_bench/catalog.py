"""What meshver says about the demo catalog: the one source of catalog facts for the bench.

Nothing here derives a route key, a default or a weight. The compiled catalog comes from
`meshver check --json CATALOG` (services with their sources and defaults applied, lines and
deployments with route keys, effective weights, lifecycle response headers); the routes every
arm sends a route key to come from the route config `meshver render envoy` writes.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from .env import CATALOG, MESHVER_CLI, run

# The lifecycle response headers a deprecated deployment's answers carry.
LIFECYCLE_HEADERS = ("deprecation", "sunset", "link")


def _cli(*args):
    done = run([str(MESHVER_CLI), *args], 60)
    if done.returncode != 0:
        sys.exit(f"meshver {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _version_key(version):
    return tuple(int(part) for part in version.split("."))


def _required(service, name):
    """A field of a compiled service, which must be there: the bench supplies no defaults."""
    if service.get(name) is None:
        sys.exit(f"`meshver check --json` prints no {name} for service {service.get('name')}; "
                 "the bench reads it from there instead of assuming a default")
    return service[name]


def compiled_catalog(catalog_path=CATALOG):
    """The catalog as the filter compiles it, from `meshver check --json`."""
    return _cli("check", "--json", str(catalog_path))


def services(compiled):
    """Per service, in catalog order, what the arms need (all of it from the compiled catalog):

    name, prefixes, default (the default version as written, e.g. "1"), sources, version_header,
    query_param, accept_vendor (None: any), sticky_header (the header holding a client's sticky
    key; None: no sticky key), versions (deployed, ascending), deployments
    ([{route, version, major}], ascending), lines ({major: {route, deployments}}).
    """
    out = []
    for s in compiled["services"]:
        deployments = sorted(s["deployments"], key=lambda d: _version_key(d["version"]))
        out.append({
            "name": s["name"],
            "prefixes": _required(s, "path_prefixes"),
            "default": s["default_version"],
            "sources": _required(s, "sources"),
            "version_header": _required(s, "version_header"),
            "query_param": _required(s, "query_param"),
            "accept_vendor": s.get("accept_vendor"),
            "sticky_header": (s.get("sticky") or {}).get("header"),
            "versions": _required(s, "supported_versions"),
            "deployments": [{"route": d["route"], "version": d["version"], "major": d["major"]}
                            for d in deployments],
            "lines": {line["major"]: {"route": line["route"], "deployments": line["deployments"]}
                      for line in s["lines"]},
        })
    return out


def rendered_bootstrap(upstream_ports, wasm, catalog_path=CATALOG, admin_port=9901, port=10000, body_wasm=None,
                       host="wasm"):
    """The bootstrap `meshver render envoy --host HOST` writes for one listener named `bench` on
    `port` serving `catalog_path`, with these upstreams (deployment route key -> port)."""
    work = Path(tempfile.mkdtemp(prefix="meshver-bench-render-"))
    try:
        mesh = {"admin": f"127.0.0.1:{admin_port}", "wasm": str(wasm),
                "endpoints": {name: f"127.0.0.1:{port}" for name, port in upstream_ports.items()},
                "listeners": [{"name": "bench", "address": f"127.0.0.1:{port}", "catalog": str(catalog_path)}]}
        if body_wasm:
            mesh["body_wasm"] = str(body_wasm)
        (work / "mesh.json").write_text(json.dumps(mesh))
        return _cli("render", "envoy", "--host", host, str(work / "mesh.json"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def hcm_of(bootstrap):
    """The HTTP connection manager of a rendered bootstrap's first listener."""
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def rendered_routes_and_clusters(upstream_ports, wasm):
    """The route config and the clusters of the bootstrap `meshver render envoy` writes for the
    demo catalog and these upstreams (deployment route key -> port): an exact match on the route
    header per route key, weighted clusters for lines, lifecycle headers as
    response_headers_to_add; a cluster per deployment (and any other the routes name, such as a
    staged shadow's mirror)."""
    bootstrap = rendered_bootstrap(upstream_ports, wasm)
    return hcm_of(bootstrap)["route_config"], bootstrap["static_resources"]["clusters"]


def rendered_native_filter(upstream_ports, wasm):
    """The header filter `meshver render envoy --host native` writes for the demo catalog: Envoy's
    dynamic module filter loading libmeshver.so with the catalog as its config."""
    hcm = hcm_of(rendered_bootstrap(upstream_ports, wasm, host="native"))
    return next(f for f in hcm["http_filters"] if f["name"] == "meshver")


def keyed_routes(route_config, route_header):
    """Route key -> the rendered route that matches it exactly in `route_header`."""
    out = {}
    for route in route_config["virtual_hosts"][0]["routes"]:
        for header in route["match"].get("headers", []):
            if header["name"] == route_header and "exact" in header.get("string_match", {}):
                out[header["string_match"]["exact"]] = route
    return out


def lifecycle_headers(compiled):
    """Deployment route key -> the lifecycle headers its answers carry ({name: value}), as the
    compiled catalog gives them (the arms add them from the rendered route config)."""
    return {d["route"]: d["lifecycle"]["response_headers"]
            for s in compiled["services"] for d in s["deployments"]}
