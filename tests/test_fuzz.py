"""Hostile input (issue 15): the fuzz harness's own checks, a fast sample of mutants, and the
hand-made attacks of tests/fuzz_cases/ (plus those made at run time: hostile file names, a
FIFO, files outside the spec tree, stdin, a poisoned grammar cache).

Every case runs in a forked worker with a 10 s and 2 GB limit (tests/fuzzlib.py); a case
passes when its outcome is in the expected class (accepted or a located diagnostic) and, where
the case says so, its output holds or lacks some text. benchmarks/fuzz.py runs 10,000 mutants.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import random

import pytest

import fuzzlib
from fuzzlib import ACCEPTED, BAD, EXCEPTION, LOCATED, MEMORY, TIMEOUT, UNLOCATED

HAS_TORCH = importlib.util.find_spec("torch") is not None
SAMPLE_SEED = 1


def _runnable(case: fuzzlib.Case) -> fuzzlib.Case | None:
    """The case with `compile` dropped where torch is missing (None when nothing is left)."""
    if not HAS_TORCH:
        case.commands = tuple(c for c in case.commands if c != "compile")
    return case if case.commands else None


def _run(cases, tmp_path, **kwargs) -> dict[str, tuple]:
    # Under pytest-xdist the other workers already hold the cores: one child at a time, and the
    # time limit (which catches blow-ups, not slowness) stretched by the workers sharing them.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        kwargs.setdefault("jobs", 1)
        kwargs.setdefault("time_limit", fuzzlib.TIME_LIMIT_S * workers)
    seeds = fuzzlib.seed_specs()
    return {case.ident: (case, outcomes) for case, outcomes in fuzzlib.run_all(cases, tmp_path, seeds, **kwargs)}


def _report(results) -> str:
    """One line per run in the last four classes: the case, how it was made, what happened."""
    lines = []
    for case, outcomes in results:
        for o in outcomes:
            if o.klass in BAD:
                what = o.detail or next(iter(o.stderr.strip().splitlines()), "")
                lines.append(f"case {case.ident} ({case.origin}; {', '.join(case.mutations)}) {o.command}: "
                             f"{o.klass}: {what}"[:300])
    return "\n".join(lines)


# --- the harness itself ------------------------------------------------------------------------

@pytest.mark.parametrize("rc, stderr, kwargs, expected", [
    (0, "", {}, ACCEPTED),
    (1, "a.inc:3:5: error: unknown layer `cnv`\n", {}, LOCATED),
    (1, "a.inc:1:1: warning: stride leaves columns unread\nerror: the spec defines no network\n", {}, UNLOCATED),
    (2, "usage: incdsl\nincdsl: error: --set expects NAME=VALUE\n", {}, UNLOCATED),
    (70, "incdsl: internal error: KeyError: 'x'\n", {}, EXCEPTION),
    (1, "Traceback (most recent call last):\n  File ...\n", {}, EXCEPTION),
    (0, "", {"detail": "generated source fails on import: NameError"}, EXCEPTION),
    (None, "", {"signal_name": "SIGSEGV"}, EXCEPTION),
    (None, "", {"timed_out": True}, TIMEOUT),
    (70, "incdsl: internal error: MemoryError\n", {"memory": True}, MEMORY),
])
def test_classify_sorts_outcomes_into_the_six_classes(rc, stderr, kwargs, expected):
    assert fuzzlib.classify(rc, stderr, **kwargs) == expected


def test_cases_are_deterministic_for_a_seed():
    seeds = fuzzlib.seed_specs()
    first = [fuzzlib.make_case(7, i, seeds) for i in range(30)]
    again = [fuzzlib.make_case(7, i, seeds) for i in reversed(range(30))][::-1]
    other = [fuzzlib.make_case(8, i, seeds) for i in range(30)]
    assert [(c.data, c.name, c.commands) for c in first] == [(c.data, c.name, c.commands) for c in again]
    assert [c.data for c in first] != [c.data for c in other]


def test_every_mutation_kind_is_drawn_and_changes_the_spec():
    seeds = fuzzlib.seed_specs()
    changed = collections.Counter()
    for i in range(600):
        case = fuzzlib.make_case(3, i, seeds)
        if len(case.mutations) == 1 and (case.data != seeds[case.origin].encode() or case.name != "case.inc"):
            changed[case.mutations[0]] += 1
    assert set(changed) == set(fuzzlib.MUTATORS)


def test_mutators_reach_the_hostile_inputs_of_the_issue():
    seeds = fuzzlib.seed_specs()
    rng = random.Random(0)
    text = seeds["specs/inception_v4.inc"]
    ctx = {"rel_dir": "specs", "name": "case.inc", "seeds": seeds}
    includes = {fuzzlib.m_hostile_include(rng, text, ctx).split('include "', 1)[1].split('"')[0] for _ in range(400)}
    assert {"/dev/zero", "/proc/self/environ", "../fifo.inc", "../../outside/secret.txt"} <= includes
    specials = "".join(fuzzlib.m_insert_special(rng, text, ctx) for _ in range(400))
    assert all(ch in specials for ch in ("\x00", "\r", "\x0c", "\x85", "\u2028", "\ufeff", "\x1b", "\uff18"))


def test_workers_sort_runs_by_exit_code_time_and_memory(tmp_path):
    tiny = fuzzlib.TINY.encode()
    cases = [fuzzlib.Case("ok", tiny), fuzzlib.Case("bad", tiny.replace(b"conv 3x3", b"cnv 3x3")),
             fuzzlib.Case("sleep", tiny, setup="sleep", commands=("check",)),
             fuzzlib.Case("big", tiny, setup="allocate_3gb", commands=("check",))]
    results = _run(cases, tmp_path, time_limit=2.0)
    classes = {ident: [o.klass for o in outcomes] for ident, (_, outcomes) in results.items()}
    assert classes == {"ok": [ACCEPTED, ACCEPTED], "bad": [LOCATED, LOCATED], "sleep": [TIMEOUT], "big": [MEMORY]}
    assert "unknown" in results["bad"][1][0].stderr or "cnv" in results["bad"][1][0].stderr


# --- a fast sample of mutants ---------------------------------------------------------------------

@pytest.mark.parametrize("n_cases", [40, pytest.param(300, marks=pytest.mark.slow)])
def test_fuzz_sample_has_no_unlocated_errors_crashes_or_blowups(tmp_path, n_cases):
    """The first `n_cases` mutants of one seed (the slow run's 300 include the default run's 40)."""
    seeds = fuzzlib.seed_specs()
    commands = ("check", "cost", "compile") if HAS_TORCH else ("check", "cost")
    cases = [fuzzlib.make_case(SAMPLE_SEED, i, seeds, 0.1, commands) for i in range(n_cases)]
    results = list(_run(cases, tmp_path).values())
    assert len(results) == n_cases
    assert not _report(results), "\n" + _report(results)


# --- the hand-made cases --------------------------------------------------------------------------

HAND_MADE = [c for c in map(_runnable, fuzzlib.hand_made_cases()) if c is not None]


@pytest.fixture(scope="module")
def hand_made_results(tmp_path_factory):
    """Every fast hand-made case, run once, two at a time."""
    return _run([c for c in HAND_MADE if not c.slow], tmp_path_factory.mktemp("hand-made"))


def _check_hand_made(case, outcomes):
    problems = [msg for o in outcomes for msg in fuzzlib.expected_failures(case, o)]
    assert not problems, f"issue item {case.item}: " + "; ".join(problems)


@pytest.mark.parametrize("case", [c for c in HAND_MADE if not c.slow], ids=lambda c: c.ident)
def test_hand_made_case(case, hand_made_results):
    _check_hand_made(case, hand_made_results[case.ident][1])


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in HAND_MADE if c.slow], ids=lambda c: c.ident)
def test_slow_hand_made_case(case, tmp_path):
    _check_hand_made(case, _run([case], tmp_path)[case.ident][1])


def test_every_spec_text_item_of_the_issue_has_a_hand_made_case():
    items = {c.item for c in fuzzlib.hand_made_cases()}
    assert {"1", "2", "3", "4", "5", "6", "11", "12", "13", "14", "17"} <= items
