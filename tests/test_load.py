"""Load, short: 20 s of the bench's request mix (with sticky keys and the served demo's JSON
bodies) on 64 connections, half HTTP/1.1 and half HTTP/2, through the demo catalog and the
served demo rendered on one Envoy (tests/soak.py builds and drives it; `make soak` runs the
same for minutes and publishes its figures)."""

import pytest

import soak

SECONDS, CONNECTIONS, WARMUP = 20, 64, 8


@pytest.fixture(scope="module")
def loaded():
    """The stack, its kinds, what each kind answered once before the load, and the load's result."""
    with soak.LoadStack() as stack:
        kinds = soak.load_kinds(stack.compiled["edge"], stack.compiled["served"])
        before = soak.check_answers_once(stack, kinds)
        result = soak.run_load(stack, kinds, SECONDS, CONNECTIONS, WARMUP)
        yield stack, kinds, before, result


def test_each_kind_answers_as_the_mix_expects_before_the_load(loaded):
    _, kinds, before, _ = loaded
    assert before == []
    # The whole mix: rejects, sticky keys and bodies are in it.
    assert {k.status for k in kinds} == {200, 400, 422}
    assert any(k.sticky_header for k in kinds) and any(k.body for k in kinds)


def test_every_kind_ran_over_both_protocols_for_the_whole_time(loaded):
    _, kinds, _, result = loaded
    ran = {(d.kind.name, d.protocol) for d in result["drivers"] if d.runs >= 2}
    assert ran == {(k.name, protocol) for k in kinds for protocol in soak.PROTOCOLS}
    assert sum(d.connections for d in result["drivers"]) == CONNECTIONS
    assert result["elapsed"] >= SECONDS


def test_every_request_got_its_kinds_status(loaded):
    assert soak.status_problems(loaded[3]) == []


def test_no_request_lost(loaded):
    stack, kinds, _, result = loaded
    assert soak.count_problems(stack, kinds, result) == []


def test_memory_is_flat_after_the_warm_up(loaded):
    _, _, _, result = loaded
    # A sample a second, from before the load to its end.
    assert len(result["samples"]) >= SECONDS - 1
    assert soak.memory_problems(result) == []


def test_nothing_logged_at_critical_level(loaded):
    assert soak.log_problems(loaded[0]) == []
