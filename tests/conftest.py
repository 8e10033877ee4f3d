"""Pytest glue for the e2e harness: the `demo` stack, Envoy log checks, logs on failure."""

import json

import pytest

import harness


@pytest.fixture(scope="module")
def demo():
    """The demo catalog served by real Envoy + the meshver filter + one upstream per deployment.

    Module-scoped: a module that shifts weights at runtime does not leak into the next one.
    """
    catalog = json.loads(harness.DEMO_CATALOG.read_text())
    with harness.DemoStack(catalog) as stack:
        yield stack
    stack.envoy.check_no_wasm_critical()


@pytest.fixture(autouse=True)
def _envoys_of_this_test(request):
    """Stop any Envoy a test started and fail the test if its filter logged [critical][wasm]."""
    first = len(harness.started_envoys)
    request.node.first_envoy = first
    yield
    for envoy in harness.started_envoys[first:]:
        envoy.stop()
        envoy.check_no_wasm_critical()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every Envoy involved to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    first = getattr(item, "first_envoy", len(harness.started_envoys))
    for index, envoy in enumerate(harness.started_envoys):
        if envoy.running or index >= first:
            report.sections.append((f"{envoy.name} :{envoy.port} log (tail)", envoy.log_tail()))
