"""Data compatibility before traffic moves, through the real Envoy (header and body filters) and
real upstreams: a catalog whose 2.1 contract refuses bodies 2 accepted. `meshver check` names
each finding by its JSON path and exits 1; `meshver shift` and `meshver rollout` refuse to send
2.1.0 traffic, leaving Envoy's live weights as they were, unless given `--force`.

`shift` and `rollout` read the catalog from the running Envoy (its config dump), as an operator
would run them: the refusal comes from the catalog Envoy actually serves."""

import json

import pytest

import harness
from harness import http1, meshver

# Contract 2.1 breaks 2 twice: it requires /email, which 2 did not, and it no longer accepts
# "team" at /plan. 2.1.0 starts with no traffic.
CONTRACT_2 = {"version": "2", "path_prefix": "/register", "methods": ["POST"],
              "schema": {"type": "object", "properties": {"email": {"type": "string"},
                                                          "plan": {"enum": ["free", "pro", "team"]}}}}
CONTRACT_2_1 = {"version": "2.1", "path_prefix": "/register", "methods": ["POST"],
                "schema": {"type": "object", "required": ["email"],
                           "properties": {"email": {"type": "string"}, "plan": {"enum": ["free", "pro"]}}}}
CATALOG = {"services": [{
    "name": "user",
    "match": {"path_prefixes": ["/register", "/login"]},
    "default_version": "2",
    "deployments": [{"version": "2.0.3", "weight": 100}, {"version": "2.1.0", "weight": 0}],
    "data": {"contracts": [CONTRACT_2, CONTRACT_2_1]},
}]}
# The JSON paths of the two findings, and what each names.
FINDINGS = {
    "$.services[0].data.contracts[1].schema.required": "/email",
    "$.services[0].data.contracts[1].schema.properties.plan.enum": '"team" at /plan',
}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack():
    with harness.DemoStack(json.loads(json.dumps(CATALOG))) as running:
        running.old, running.new = running.route("user", "2.0.3"), running.route("user", "2.1.0")
        yield running
    running.envoy.check_no_wasm_critical()


def line_weights(stack):
    """(2.0.3, 2.1.0): the 2.x line's weights in Envoy now, read back through its admin."""
    weights = stack.envoy.weights()
    return weights[stack.old], weights[stack.new]


def refused(result, command):
    """`command` refused in one line that names the deployment, each broken field and both versions."""
    assert result.returncode == 1, f"{command} went through:\n{result.stdout}{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("meshver: user 2.1.0 breaks bodies its line accepted: "), line
    assert "contract 2.1 (POST /register) requires /email, which 2 (POST) did not require" in line, line
    assert 'no longer accepts "team" at /plan, which 2 (POST) accepted' in line, line
    assert line.endswith("; fix the contract, or pass --force to send it traffic anyway"), line
    # Nothing reports a weight that was set.
    assert "2.1.0 " not in result.stdout and "%" not in result.stdout, result.stdout


def test_check_names_each_finding_by_its_json_path_and_exits_1(tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG, indent=2))
    result = meshver("check", catalog)
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(FINDINGS), result.stderr
    for line, (path, field) in zip(lines, FINDINGS.items()):
        assert line.startswith(f"{catalog}: {path}: contract 2.1 (POST /register) "), line
        assert field in line and line.endswith(": bodies 2 accepted are refused"), line
    # The findings do not stop the filter from loading: Envoy serves this very catalog (below).


def test_the_filter_refuses_under_2_1_what_2_accepted(stack):
    """What the findings warn of, seen through the body filter: one body, accepted as 2,
    refused as 2.1 with a pointer for each field the findings named."""
    body = json.dumps({"plan": "team"})
    as_2 = http1("POST", stack.url + "/register", headers={**JSON, "x-api-version": "2"}, body=body)
    assert as_2.status == 200 and as_2.json["service"] == "user", as_2.body
    as_2_1 = http1("POST", stack.url + "/register", headers={**JSON, "x-api-version": "2.1"}, body=body)
    assert as_2_1.status == 422, as_2_1.body
    assert sorted(e["pointer"] for e in as_2_1.json["errors"]) == ["/email", "/plan"]


def test_shift_to_the_affected_deployment_is_refused_and_changes_nothing(stack):
    before = line_weights(stack)
    assert before == (100, 0)
    refused(meshver("shift", "user", "--to", "2.1.0", "--weight", "50", "--admin", stack.envoy.admin_url),
            "shift")
    assert line_weights(stack) == before
    assert stack.envoy.runtime() == {}, "no runtime key was written"
    # Moving traffic away from it, or toward the deployment that keeps its line's promise, is fine.
    assert meshver("shift", "user", "--to", "2.1.0", "--weight", "0", "--admin", stack.envoy.admin_url).returncode == 0
    assert meshver("shift", "user", "--to", "2.0.3", "--weight", "100", "--admin", stack.envoy.admin_url).returncode == 0
    assert line_weights(stack) == (100, 0)


def test_shift_with_force_goes_through(stack):
    result = meshver("shift", "user", "--to", "2.1.0", "--weight", "50", "--force", "--admin", stack.envoy.admin_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "user user-v2: 2.1.0 50%, 2.0.3 50%\n"
    assert line_weights(stack) == (50, 50)
    assert meshver("rollback", "user", "--admin", stack.envoy.admin_url).returncode == 0
    assert line_weights(stack) == (100, 0)


def rollout(stack, *extra):
    """`meshver rollout` of 2.1.0 in two quick steps; no traffic needed to pass them."""
    return meshver("rollout", "user", "--to", "2.1.0", "--steps", "40,100", "--interval", "1s",
                   "--min-requests", "0", "--admin", stack.envoy.admin_url, *extra)


def test_rollout_is_refused_before_its_first_step(stack):
    assert line_weights(stack) == (100, 0)
    runtime = stack.envoy.runtime()
    result = rollout(stack)
    refused(result, "rollout")
    assert "step" not in result.stdout, result.stdout
    assert line_weights(stack) == (100, 0) and stack.envoy.runtime() == runtime


def test_rollout_with_force_goes_through(stack):
    result = rollout(stack, "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 1/2: user-2.1.0 at 40%: ok" in result.stdout, result.stdout
    assert "user 2.1.0 now takes 100% of user-v2" in result.stdout, result.stdout
    assert line_weights(stack) == (0, 100)
    assert meshver("rollback", "user", "--admin", stack.envoy.admin_url).returncode == 0
    assert line_weights(stack) == (100, 0)
