"""A clone of the repository alone tests itself: nothing reads beside it.

outside_reads.py, installed by conftest.py, fails any test that opens a file next to the
repository; these tests check that guard, and scan what the repository tells other programs
to read.
"""

import os
import re
import subprocess
import sys

import harness

ROOT = harness.ROOT
# Code and config that the build, the tests, the demo and the benchmark run (prose that
# mentions the team's folders is not read by anything).
SCANNED = ["tests", "bench", "examples", "envoy", "src", "cli", "tools", "Makefile", ".ci", "Cargo.toml"]
# The team's shared folder beside the repository, reached relatively, through pathlib, or by
# its absolute path on the team's machines.
BESIDE = re.compile(r"\.\./+shared\b|\bparent\s*/\s*[\"']shared\b|/work/shared\b")


def test_no_file_names_a_path_beside_the_repository():
    listed = subprocess.run(["git", "ls-files", "-z", "--", *SCANNED], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    files = [f for f in listed.stdout.split("\0") if f and not f.endswith(".md")]
    assert "tests/harness.py" in files and "Makefile" in files, files[:20]
    this = os.path.relpath(__file__, ROOT)
    found = [f"{name}:{number}: {line.strip()}"
             for name in files if name != this and (ROOT / name).is_file()
             for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1)
             if BESIDE.search(line)]
    assert not found, "these read outside the repository, which a fresh clone does not have:\n" + "\n".join(found)


PROBE = '''
import subprocess
import harness

BESIDE = harness.ROOT.parent / "meshver-guard-probe"

try:
    (BESIDE / "collected.yaml").read_text()  # while collecting: fails the run
except OSError:
    pass


def test_reads_beside_the_repository():
    try:
        (BESIDE / "crds.yaml").read_text()
    except OSError:
        pass


def test_starts_a_program_on_a_file_beside_the_repository():
    subprocess.run(["cat", str(BESIDE / "mesh.json")], capture_output=True)


def test_reads_inside_the_repository():
    assert (harness.ROOT / "examples/catalog.json").read_text()
'''


def test_the_guard_fails_a_test_that_reads_beside_the_repository(tmp_path):
    """The same conftest in a pytest of its own, on tests that read beside the repository: the
    reading tests fail by name, the read while collecting fails the run, the rest pass."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    probe = ROOT.parent / "meshver-guard-probe"
    assert "test_reads_beside_the_repository read outside the repository" in out, out
    assert f"open {probe / 'crds.yaml'}" in out, out
    assert "test_starts_a_program_on_a_file_beside_the_repository read outside" in out, out
    assert f"subprocess.Popen {probe / 'mesh.json'}" in out, out
    assert f"open {probe / 'collected.yaml'} (during collection)" in out, out
    assert "3 passed, 2 errors" in out, out
