"""The statement walker (incdsl/lang/walk.py): every statement once, in source order."""
from __future__ import annotations

from hypothesis import given, settings

import incdsl
from incdsl.lang import syntax as s
from incdsl.lang.parse import parse
from incdsl.lang.walk import fold_statements, iter_elements, iter_statements, walk_statements
from shapegen import valid_specs

# One statement of every kind, each on its own line, nested several deep.
ALL_FORMS = """\
network all(classes = 10):
    input 3x32x32
    conv 3x3 8 S as stem -> relu
    concat as mix:
        branch: conv 1x1 4
        branch as b2:
            with conv(bn = 0.001):
                conv 3x3 4 S
    add(act = relu):
        branch: identity
        branch: conv 3x3 8 S
    residual(act = relu):
        shortcut: conv 1x1 16 /2 act = off
        conv 3x3 16 /2 S
    repeat 2 as i: conv 1x1 (4 + i) S
    aux side(weight = 0.3) from stem: gap -> flatten -> linear classes
    gap -> flatten -> linear classes
"""

# (kind, line) of each statement, in source order.
EXPECTED = [
    ("InputStmt", 2), ("Chain", 3), ("Composite", 4), ("BranchStmt", 5), ("Chain", 5), ("BranchStmt", 6),
    ("WithStmt", 7), ("Chain", 8), ("Composite", 9), ("BranchStmt", 10), ("Chain", 10), ("BranchStmt", 11),
    ("Chain", 11), ("Composite", 12), ("ShortcutStmt", 13), ("Chain", 13), ("Chain", 14), ("RepeatStmt", 15),
    ("Chain", 15), ("AuxStmt", 16), ("Chain", 16), ("Chain", 17),
]


def network_body(text: str):
    return parse(text).definitions[0].body


def test_every_statement_of_every_kind_once_in_source_order():
    body = network_body(ALL_FORMS)
    seen = [(type(st).__name__, st.span.line) for st in iter_statements(body)]
    assert seen == EXPECTED
    assert len({id(st) for st in iter_statements(body)}) == len(EXPECTED)


def test_paths_name_the_enclosing_statements():
    depth = {st.span.line: len(path) for st, path in walk_statements(network_body(ALL_FORMS))
             if isinstance(st, s.Chain)}
    assert depth == {3: 0, 5: 2, 8: 3, 10: 2, 11: 2, 13: 2, 14: 1, 15: 1, 16: 1, 17: 0}
    (with_stmt, path), = [(st, p) for st, p in walk_statements(network_body(ALL_FORMS)) if isinstance(st, s.WithStmt)]
    assert [type(p).__name__ for p in path] == ["Composite", "BranchStmt"]


def test_elements_in_source_order():
    names = [e.name for e in iter_elements(network_body(ALL_FORMS))]
    assert names == ["conv", "relu", "conv", "conv", "identity", "conv", "conv", "conv", "conv",
                     "gap", "flatten", "linear", "gap", "flatten", "linear"]


def test_fold_sees_the_body_before_the_statement():
    # Count the statements under each: a fold's value of a body is the list of its statements' values.
    def count(st, inner, path):
        return 1 + sum(inner)
    assert sum(fold_statements(network_body(ALL_FORMS), count)) == len(EXPECTED)


def all_statements_by_recursion(body):
    """The reference: the obvious recursion the walker replaces."""
    out = []
    for st in body:
        out.append(st)
        out += all_statements_by_recursion(getattr(st, "body", ()) or ())
    return out


@settings(max_examples=60, deadline=None)
@given(valid_specs())
def test_random_specs_walk_like_the_recursion(case):
    text, _ = case
    for d in parse(text).definitions:
        expected = all_statements_by_recursion(d.body)
        assert [id(x) for x in iter_statements(d.body)] == [id(x) for x in expected]
        positions = [(x.span.line, x.span.col) for x in expected]
        assert positions == sorted(positions), text  # source order
        assert list(iter_elements(d.body)) == [e for x in expected if isinstance(x, s.Chain) for e in x.elements]


def test_all_forms_spec_lowers():
    assert incdsl.load(ALL_FORMS).output_shape == (10,)
