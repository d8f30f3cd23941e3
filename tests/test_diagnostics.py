"""Diagnostics: every error kind with its message and place, golden renderings, and the renderer.

Each bad spec in tests/errors/ sits beside the diagnostics it must produce (`NAME.err`), in the
style of rustc's UI tests. Paths in the rendering are relative to tests/errors/. After an
intended change of wording, regenerate the golden files and review the diff:

    UPDATE_GOLDEN=1 pytest tests/test_diagnostics.py
"""
import os
import time
from pathlib import Path

import pytest

import incdsl
from incdsl.diagnostics import Diagnostic, IncdslError, Span, did_you_mean, error, render

ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.inc"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def rendered(name: str) -> str:
    """What loading tests/errors/NAME.inc prints: its error, or its warnings; paths made relative."""
    try:
        net = incdsl.load(ERRORS / f"{name}.inc")
        text = "\n".join(render(w, net.sources) for w in net.warnings)
    except IncdslError as exc:
        text = exc.render()
    return text.replace(str(ERRORS) + os.sep, "").replace(str(ERRORS), ".") + "\n"


@pytest.mark.parametrize("name", CASES)
def test_golden_rendering(name):
    golden = ERRORS / f"{name}.err"
    text = rendered(name)
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file for {name}.inc: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text(encoding="utf-8")


def test_no_golden_file_is_orphaned():
    assert sorted(p.stem for p in ERRORS.glob("*.err")) == CASES


# --- every error kind: message, file, line and column --------------------------------------------

# name -> (message (a prefix), file it is reported in, line, column, notes that must be among its notes)
KINDS = {
    "syntax_unexpected_character": ("unexpected character `[`", None, 4, 14, []),
    "syntax_dangling_arrow": ("unexpected end of line", None, 4, 21, ["expected a name"]),
    "syntax_missing_colon": ("unexpected end of line", None, 2, 24, ["expected `:`"]),
    "syntax_unexpected_indentation": ("unexpected indentation", None, 5, 9, []),
    "syntax_dedent_mismatch": ("indentation does not match any outer level", None, 6, 7, []),
    "syntax_missing_body": ("expected an indented body after `:`", None, 5, 5, []),
    "syntax_unclosed_parenthesis": ("unexpected `)`", None, 4, 19, []),
    "syntax_repeat_branch_inline": ("unexpected `branch` in `repeat`", None, 5, 18, ["expected `named`, `:`, `as`"]),
    "syntax_residual_bare_arguments": ("unexpected `scale` in `residual`", None, 5, 14, []),
    "syntax_if_missing_colon": ("unexpected end of line in `if`", None, 4, 13, ["expected `:`"]),
    "syntax_else_without_if": ("`else` without an `if` before it", None, 5, 5, []),
    "syntax_let_missing_equals": ("unexpected `3` in `let`", None, 4, 11, []),
    "syntax_repeat_after_arrow": ("`repeat` cannot follow `->` in a chain", None, 4, 27, []),
    "chain_repeat_after_arrow": ("`repeat` cannot follow `->` in a chain", None, 5, 27, []),
    "chain_repeat_after_colon": ("`repeat` cannot follow `:` on the same line", None, 5, 17, []),
    "unknown_layer": ("unknown layer or block `cnov`", None, 4, 5, []),
    "unknown_block": ("unknown layer or block `inceptoin_a`", None, 4, 15, []),
    "unknown_name": ("unknown name `clases`", None, 4, 30, []),
    "unknown_network_parameter": ("unknown name `clases`", None, 2, 34, []),
    "unknown_layer_keyword": ("`conv` has no argument `filter`", None, 4, 19, []),
    "unknown_block_keyword": ("block `mixed` has no parameter `poolproj`", None, 4, 18,
                              ["`mixed` is defined at unknown_block_keyword.inc:5:7"]),
    "missing_block_argument": ("`mixed` needs a value for parameter `pool_proj`", None, 4, 5,
                               ["`pool_proj` is declared at missing_block_argument.inc:5:16"]),
    "missing_layer_argument": ("`conv` needs `filters`", None, 4, 5, []),
    "too_many_arguments": ("`mixed` takes 2 argument(s), given 3", None, 4, 17, []),
    "type_float_filters": ("`conv` does not take `32.0` here", None, 4, 14, []),
    "type_act_number": ("`conv` act: expected an activation", None, 4, 19, []),
    "type_dropout_range": ("`dropout` p: expected a probability in [0, 1), found `1.5`", None, 4, 31, []),
    "type_repeat_count": ("repeat count: expected an integer, found `2.5`", None, 4, 12, []),
    "type_padding_tuple": ("`conv` pad: expected padding V, S, p, (ph, pw) or (top, bottom, left, right)", None, 4, 17, []),
    "concat_spatial_mismatch": ("concat branches disagree in spatial size", None, 6, 9,
                                ["this branch gives 96x17x17; the first gives 96x35x35"]),
    "residual_mismatch": ("residual sum with mismatched shapes", None, 4, 5,
                          ["the shortcut gives 32x17x17, the branch gives 64x17x17"]),
    "residual_stride_mismatch": ("residual sum with mismatched shapes", None, 4, 5,
                                 ["the shortcut gives 32x17x17, the branch gives 32x9x9"]),
    "spatial_size_zero": ("`conv` 3x3 /1 on a 1x1 input leaves no output", None, 4, 15, []),
    "include_cycle": ("include cycle: `../include_cycle.inc` is already being included", "lib/cycle_b.inc", 1, 1,
                      ["include_cycle.inc -> lib/cycle_b.inc -> include_cycle.inc"]),
    "include_missing": ("cannot read included file `lib/no_such_file.inc`", None, 2, 1,
                        ["looked for lib/no_such_file.inc: it does not exist"]),
    "include_defines_network": ("included file defines network `other`", "lib/has_network.inc", 3, 9, []),
    "duplicate_block": ("block `stem` is defined twice", "lib/blocks.inc", 2, 7,
                        ["first defined here: duplicate_block.inc:6:7"]),
    "repeat_past_a_million": ("this network would have at least 1,000,000,001 layers; the limit is 100,000", None,
                              4, 12, ["each of its 1,000 repetitions makes at least 1,000,000"]),
    "recursion": ("block `ping` instantiates itself", None, 8, 19,
                  ["in block `pong` instantiated at recursion.inc:6:19",
                   "in block `ping` instantiated at recursion.inc:4:5"]),
    "branch_outside_concat": ("`branch:` outside `concat` or `add`", None, 4, 5, []),
    "input_not_first": ("network `t` must start with its input", None, 3, 5, []),
    "flat_input_to_conv": ("`conv` needs a CxHxW input, found the flat vector 3", None, 4, 23, []),
    "linear_on_feature_map": ("`linear` needs a flat input, found 32x1x1", None, 4, 29, []),
    "error_in_nested_block": ("concat branches disagree in spatial size", None, 10, 9,
                              ["in block `inner` instantiated at error_in_nested_block.inc:6:19",
                               "in block `outer` instantiated at error_in_nested_block.inc:4:5"]),
    "duplicate_label": ("name `stem` is already used here", None, 5, 22, ["first used here: duplicate_label.inc:4:22"]),
    "groups_not_dividing": ("`groups = 2` must divide both the input depth 3 and the filters 32", None, 4, 5, []),
    "aux_unknown_label": ("no statement labelled `stme` comes before this head", None, 5, 33, []),
    "with_unknown_layer": ("`with` cannot set defaults for `cnv`", None, 4, 10, []),
    "two_networks": ("a spec defines one network", None, 4, 9, ["`a` is defined here: two_networks.inc:2:9"]),
    "division_by_zero": ("division by zero", None, 4, 15, []),
    "no_network": ("the spec defines no network", None, 3, 13, []),  # the end of the file
    # hostile input: includes, bytes and characters (tests/test_hostile_inputs.py has the rest)
    "include_absolute": ("include path `/etc/hostname` is absolute", None, 2, 1, []),
    "include_not_a_spec": ("included file `lib/not_a_spec.txt` is not an incdsl spec", None, 2, 1,
                           ["lib/not_a_spec.txt:1:1: it does not start with `include`, `block` or `network`"]),
    "include_invalid_utf8": ("invalid UTF-8 (byte 0xe9)", "lib/latin1.inc", 3, 22,
                             ["included at include_invalid_utf8.inc:2:1"]),
    "invalid_utf8": ("invalid UTF-8 (byte 0xe9)", None, 3, 23, []),
    "digit_fullwidth": ("unexpected character `\uff18`", None, 4, 14, []),
    "digit_arabic_indic": ("unexpected character `\u0668`", None, 4, 14, []),
    "comment_separators": ("unknown name `clases`", None, 5, 14, []),
    "control_characters": ("unexpected character `\\x1b`", None, 4, 17, []),
    "line_endings": ("unknown name `clases`", None, 4, 14, []),
    "comment_lone_cr": ("unknown name `clases`", None, 4, 14, []),
    "shuffle_indivisible": ("`shuffle 2` needs a depth divisible by 2", None, 7, 5, []),
    "require_failed": ("requirement failed: c >= 8 and in.c == 3", None, 5, 13, ["c = 4, in.c = 3"]),
    "require_message_in_block": ("the depth `c` must be a multiple of the group width `g`", None, 3, 13,
                                 ["c = 48, g = 7", "in block `grouped` instantiated at require_message_in_block.inc:8:5"]),
}
HINTS = {  # the did-you-mean hints of misspelt names
    "unknown_layer": "did you mean `conv`?",
    "unknown_block": "did you mean `inception_a`?",
    "unknown_name": "did you mean `classes`?",
    "unknown_layer_keyword": "did you mean `filters`?",
    "unknown_block_keyword": "did you mean `pool_proj`?",
    "aux_unknown_label": "did you mean `stem`?",
    "with_unknown_layer": "did you mean `conv`?",
}


def relative(path: str) -> str:
    return os.path.relpath(path, ERRORS)


def test_every_error_case_is_listed():
    assert sorted(KINDS) == sorted(c for c in CASES if c != "warning_valid_drops_rows")


@pytest.mark.parametrize("name", sorted(KINDS))
def test_error_message_and_place(name, load_error):
    message, file, line, col, notes = KINDS[name]
    err = load_error(ERRORS / f"{name}.inc")
    (diag,) = err.diagnostics  # one error per cause, no cascades
    assert diag.severity == "error"
    assert diag.message.startswith(message), diag.message
    assert relative(diag.span.file) == (file or f"{name}.inc")
    assert (diag.span.line, diag.span.col) == (line, col)
    shown = [n.replace(str(ERRORS) + os.sep, "") for n in diag.notes]
    shown += [f"{label.message}: {relative(label.span.file)}:{label.span.line}:{label.span.col}" for label in diag.labels]
    for note in notes:
        assert note in shown
    if name in HINTS:
        assert diag.hint == HINTS[name]
    assert "Traceback" not in err.render()


def test_call_site_mistakes_are_not_reported_as_inside_the_block(load_error):
    # the error is at the call; a note "in block `mixed` instantiated at" the same place would only repeat it
    for name in ("unknown_block_keyword", "missing_block_argument", "too_many_arguments"):
        (diag,) = load_error(ERRORS / f"{name}.inc").diagnostics
        assert not any(n.startswith("in block") for n in diag.notes), (name, diag.notes)


def test_no_network(load_error):
    (diag,) = load_error(ERRORS / "no_network.inc").diagnostics
    assert diag.message == "the spec defines no network" and "input" in diag.hint
    assert (Path(diag.span.file).name, diag.span.line, diag.span.col) == ("no_network.inc", 3, 13)  # the end of the file


def test_valid_padding_warnings_with_call_sites():
    net = incdsl.load(ERRORS / "warning_valid_drops_rows.inc")
    first, second = net.warnings
    assert first.severity == second.severity == "warning"
    assert (first.span.line, first.span.col, first.notes) == (4, 5, ())
    assert first.message == "valid padding drops 1 row(s) and 1 column(s) of the 32x32 input (output 15x15)"
    assert (second.span.line, second.span.col) == (7, 5)
    assert [n.replace(str(ERRORS) + os.sep, "") for n in second.notes] == [
        "in block `mixed` instantiated at warning_valid_drops_rows.inc:5:5"]


def test_repeat_past_a_million_fails_fast():
    start = time.perf_counter()
    with pytest.raises(IncdslError):
        incdsl.load(ERRORS / "repeat_past_a_million.inc")
    for text in ("network t:\n    input 3x8x8\n    repeat 1000000: b\nblock b:\n    identity\n",
                 "network t:\n    input 3x8x8\n    repeat 999999999999: identity\n",
                 "network t:\n    input 3x8x8\n    repeat 1000: b\nblock b:\n    repeat 1001: identity\n",
                 "network t:\n    input 3x8x8\n    repeat 600000: b\nblock b:\n    identity -> identity\n"):
        with pytest.raises(IncdslError, match="layers; the limit is 100,000"):
            incdsl.load(text)
    assert time.perf_counter() - start < 1.0


def test_max_nodes_bounds_a_network_without_repeats(load_error):
    text = "network t:\n    input 3x8x8\n    b -> b -> b\nblock b:\n    identity -> identity\n"
    assert len(incdsl.load(text).layers) == 6
    err = load_error(text, max_nodes=5)
    diag = err.diagnostics[0]
    # the third call would take the network from 5 nodes (input + 4) past the limit
    assert diag.message == "this network would have at least 7 layers; the limit is 5"
    assert (diag.span.line, diag.span.col) == (3, 15)


@pytest.mark.parametrize("text, message, line, col", [
    ("    b(8, n = 3)\nblock b(n):\n    conv 1x1 n\n", "parameter `n` given twice", 3, 10),
    ("    conv 3x3 8 S pad = 1\n", "`conv` got `pad` twice", 3, 18),
    ("    conv 1x1 3 3\n", "`conv` got a second filters: `3`", 3, 16),
    ("    gap /2\n", "`gap` takes no stride", 3, 9),
    ("    b /2\nblock b:\n    identity\n", "block `b` takes no stride", 3, 7),
    ("    conv 1x1 (in.q)\n", "`in` has no attribute `q`", 3, 15),
    ("    conv 1x1 (sqrt(4))\n", "unknown function `sqrt`", 3, 15),
    ("    conv 1x1 (divisible(10, 0))\n", "`divisible`: integer division or modulo by zero", 3, 15),
    ("    conv 1x1 (" + " * ".join(["99999999999"] * 12) + ")\n", "number too large", 3, 15),
    ("    concat:\n        conv 1x1 3\n", "only `branch:` statements may appear directly in `concat`", 4, 9),
    ("    add:\n        branch: identity\n", "`add` needs at least two branches", 3, 5),
    ("    residual:\n        shortcut: identity\n", "a residual needs a branch besides its shortcut", 3, 5),
    ("    shortcut: identity\n", "`shortcut:` outside `residual`", 3, 5),
    ("    input 3x8x8\n", "`input` may only appear once, as the first line of the network", 3, 5),
    ("    conv 1x1 3 -> concat\n", "`concat` needs a body", 3, 19),
    ("    maxpool 3x3 pad = 2\n", "`maxpool` padding (2, 2, 2, 2) is more than half the 3x3 window", 3, 5),
    ("    conv 1x1 99999999999\n", "output 99999999999x32x32 is larger than any backend can hold", 3, 5),
    ("    b\nblock conv:\n    identity\n", "`conv` is a built-in name and cannot name a block", 4, 7),
    ("    b\nblock b(n, n):\n    identity\n", "parameter `n` is declared twice", 4, 12),
    ("    b\nblock b(yes):\n    identity\n", "`yes` is a reserved word and cannot name a parameter", 4, 9),
    ("    repeat 2 as in: identity\n", "`in` is a reserved word", 3, 5),
    ("    aux h: gap\n    aux h: gap\n", "name `h` is already used here", 4, 5),
])
def test_more_error_kinds(text, message, line, col, load_error):
    err = load_error("network t:\n    input 3x32x32\n" + text)
    (diag,) = err.diagnostics
    assert diag.message.startswith(message), diag.message
    assert (diag.span.line, diag.span.col) == (line, col)


def test_ambiguous_aux_tap_lists_the_candidates(load_error):
    err = load_error("network t:\n    input 3x8x8\n    b -> b\n    aux h from z: gap\nblock b:\n    conv 1x1 3 as z\n")
    (diag,) = err.diagnostics
    assert diag.message == "label `z` is ambiguous here" and (diag.span.line, diag.span.col) == (4, 16)
    assert diag.notes == ("`z` labels `b/z` (<spec>:6:19)", "`z` labels `b_1/z` (<spec>:6:19)")


def test_unknown_override_and_bad_input_shape(load_error):
    err = load_error("network t(classes = 10):\n    input 3x8x8\n    gap\n", params={"clases": 5})
    (diag,) = err.diagnostics
    assert diag.message == "network `t` has no parameter `clases`" and diag.hint == "did you mean `classes`?"
    for shape, message in (("3x32", "expected an input size such as `3x224x224`, found `3x32`"),
                           ("0x8x8", "expected a positive integer, found `0`")):
        (diag,) = load_error(f"network t:\n    input {shape}\n").diagnostics
        assert diag.message == message and (diag.span.line, diag.span.col) == (2, 11)


def test_missing_spec_file(load_error, tmp_path):
    (diag,) = load_error(tmp_path / "nope.inc").diagnostics
    assert diag.message.startswith("no such spec file") and diag.span is None


# --- the renderer --------------------------------------------------------------------------------

def test_render_gnu_first_line_source_caret_notes_and_hint():
    text = "network t:\n    conv 3x3 96 /2 V\n"
    diag = Diagnostic("error", "something is off", Span("a.inc", 2, 10, 2, 13), ("a note",), "a hint")
    assert render(diag, {"a.inc": text}) == (
        "a.inc:2:10: error: something is off\n"
        "  |\n"
        "2 |     conv 3x3 96 /2 V\n"
        "  |          ^^^\n"
        "  |\n"
        "  = note: a note\n"
        "  = hint: a hint")


def test_render_expands_tabs_to_eight_columns():
    text = "network t:\n\tconv 3x3 96\n"
    out = render(Diagnostic("warning", "w", Span("a.inc", 2, 7, 2, 10)), {"a.inc": text})
    # column 7 (characters) is display column 14 after a tab
    assert out.splitlines()[0] == "a.inc:2:14: warning: w"
    assert out.splitlines()[2] == "2 |         conv 3x3 96"
    assert out.splitlines()[3] == "  |              ^^^"


def test_render_multiline_span_underlines_to_the_end_of_the_line():
    text = "a\nconcat:\n    branch: x\n"
    out = render(Diagnostic("error", "e", Span("f", 2, 1, 3, 14)), {"f": text})
    assert out.splitlines()[3] == "  | ^^^^^^^"


def test_render_without_source_or_span():
    assert render(Diagnostic("error", "e", Span("gone.inc", 3, 4, 3, 5)), {}) == "gone.inc:3:4: error: e"
    assert render(Diagnostic("error", "e", None, (), "h"), {}) == "error: e\n = hint: h"
    # the CLI heads a diagnostic without a place with its name, as it heads its other errors
    assert render(Diagnostic("error", "e", None, (), "h"), {}, "incdsl") == "incdsl: error: e\n = hint: h"
    assert render(Diagnostic("error", "e", Span("gone.inc", 3, 4, 3, 5)), {}, "incdsl") == "gone.inc:3:4: error: e"


def test_incdsl_error_holds_diagnostics_and_renders_them_all():
    err = IncdslError([Diagnostic("error", "one"), Diagnostic("error", "two")])
    assert err.render() == "error: one\nerror: two" and str(err) == err.render()
    assert err.render("incdsl") == "incdsl: error: one\nincdsl: error: two"
    assert err.span is None and error("x", Span("f", 1, 2, 1, 3)).span == Span("f", 1, 2, 1, 3)
    assert str(Span("f.inc", 3, 9, 3, 12)) == "f.inc:3:9"


def test_did_you_mean():
    assert did_you_mean("cnov", ["conv", "maxpool", "concat"]) == "did you mean `conv`?"
    assert did_you_mean("zzzz", ["conv"]) is None
    assert did_you_mean("inception_a", ["inception_a1", "inception_b", "reduction_a"]).startswith(
        "did you mean `inception_a1`")


def test_nesting_past_the_stack_is_a_clean_error(load_error):
    from incdsl.ir.lower import MAX_CALL_DEPTH
    head = "network t:\n    input 3x8x8\n"
    chain = "".join(f"block b{i}:\n    b{i + 1}\n" for i in range(300)) + "block b300:\n    identity\n"
    (diag,) = load_error(head + "    b0\n" + chain).diagnostics
    assert diag.message == f"blocks nest more than {MAX_CALL_DEPTH} deep"
    assert (diag.span.line, diag.span.col) == (3 + 2 * MAX_CALL_DEPTH, 5)  # the call of b64, inside b63
    assert diag.notes[0] == "in block `b63` instantiated at <spec>:129:5" and len(diag.notes) == 7
    ok = head + "    b0\n" + "".join(f"block b{i}:\n    b{i + 1}\n" for i in range(40)) + "block b40:\n    identity\n"
    assert incdsl.load(ok).layers == ["/".join(f"b{i}" for i in range(41)) + "/identity_0"]
    for expr in ("-" * 3000 + "3", "+".join(["1"] * 5000), "2 * " * 3000 + "1"):
        (diag,) = load_error(head + f"    conv 1x1 ({expr})\n").diagnostics
        assert diag.message.startswith("the spec nests too deeply here") and diag.span.line == 3
    assert incdsl.load(head + "    conv 1x1 (" + "+".join(["1"] * 300) + ")\n").output_shape == (300, 8, 8)
    # parentheses alone add no level: the grammar inlines them
    assert incdsl.load(head + "    conv 1x1 " + "(" * 3000 + "7" + ")" * 3000 + "\n").output_shape == (7, 8, 8)
