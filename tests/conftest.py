"""Pytest glue for the e2e harness: the `demo` stack, Envoy log checks, logs on failure, and
the guard that keeps every test inside the repository."""

import json
import sys

import pytest

import harness
import outside_reads

# --- The repository tests itself (outside_reads.py says how) --------------------------------

outside_reads.install()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Reads beside the repository are charged to the test running."""
    outside_reads.now_running(item.nodeid)
    yield
    outside_reads.now_running("session")


def pytest_sessionfinish(session, exitstatus):
    """Fail the run for files read beside the repository while no test was running."""
    stray = outside_reads.stray({item.nodeid for item in getattr(session, "items", [])})
    if stray:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "\n".join(["read outside the repository (a fresh clone does not have these):", *stray])
        if reporter:
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- Envoy and the demo -------------------------------------------------------------------

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
    """Attach the log tail of every Envoy involved to a failed test's report; fail a test at
    teardown if it read a file outside the repository."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "teardown":
        reads = outside_reads.of(item.nodeid)
        if reads:
            report.outcome = "failed"
            report.longrepr = "\n".join([f"{item.nodeid} read outside the repository "
                                         "(a fresh clone does not have these):", *reads])
    if not report.failed:
        return
    first = getattr(item, "first_envoy", len(harness.started_envoys))
    for index, envoy in enumerate(harness.started_envoys):
        if envoy.running or index >= first:
            report.sections.append((f"{envoy.name} :{envoy.port} log (tail)", envoy.log_tail()))


# --- Which Envoy --------------------------------------------------------------------------

def pytest_sessionstart(session):
    """Stop before any test when the Envoy ENVOY_VERSION names is missing, or the binary found is
    another release (`envoy --version` says which it is)."""
    try:
        release, build = harness.envoy_binary_version()
    except RuntimeError as missing:
        raise pytest.UsageError(str(missing)) from None
    if release != harness.envoy_version():
        raise pytest.UsageError(f"ENVOY_VERSION names {harness.envoy_version()}, "
                                f"but {harness.envoy_binary()} is Envoy {build}")


def pytest_report_header(config):
    """The Envoy the end-to-end tests run, as the binary says."""
    release, build = harness.envoy_binary_version()
    return f"envoy: {release} ({build}) from {harness.envoy_binary().relative_to(harness.ROOT)}"
