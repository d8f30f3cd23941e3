"""The parser: text -> AST, every construct of the grammar, spans, and syntax errors."""
import pytest

from incdsl import IncdslError
from incdsl.lang import syntax as s
from incdsl.lang.parse import parse


def only_network(text: str) -> s.Definition:
    module = parse(text, "t.inc")
    (net,) = [d for d in module.definitions if d.kind == "network"]
    return net


def body_of(stmt_text: str) -> tuple:
    """The statements of a network whose body is `input 3x32x32` plus `stmt_text` (indented 4)."""
    lines = "".join(f"    {line}\n" for line in stmt_text.splitlines())
    net = only_network("network t:\n    input 3x32x32\n" + lines)
    assert isinstance(net.body[0], s.InputStmt)
    return net.body[1:]


def element(stmt_text: str) -> s.Element:
    (chain,) = body_of(stmt_text)
    (el,) = chain.elements
    return el


def arg_values(el: s.Element) -> list:
    """(kind, name, python value) of each argument; expressions reduced to plain values."""
    return [(a.kind, a.name, plain(a.value)) for a in el.args]


def plain(expr):
    if isinstance(expr, s.Num):
        return expr.value
    if isinstance(expr, s.DimsLit):
        return "x".join(map(str, expr.values))
    if isinstance(expr, s.Name):
        return expr.id
    if isinstance(expr, s.Attr):
        return f"{expr.obj}.{expr.attr}"
    if isinstance(expr, s.TupleLit):
        return tuple(plain(e) for e in expr.items)
    if isinstance(expr, s.Neg):
        return ("neg", plain(expr.operand))
    if isinstance(expr, s.BinOp):
        return (expr.op, plain(expr.left), plain(expr.right))
    if isinstance(expr, s.Call):
        return (expr.func, *[plain(a) for a in expr.args])
    raise AssertionError(expr)


# --- top level -------------------------------------------------------------------------------

def test_header_params_with_and_without_defaults():
    net = only_network("network v4(classes = 1000, dropout = 0.2, width,):\n    input 3x299x299\n")
    assert net.name == "v4"
    assert [(p.name, plain(p.default) if p.default else None) for p in net.params] == [
        ("classes", 1000), ("dropout", 0.2), ("width", None)]
    assert (net.name_span.line, net.name_span.col) == (1, 9)


def test_network_without_params_and_input_statement():
    net = only_network("network t:\n    input 3x299x299\n")
    assert net.params == ()
    (inp,) = net.body
    assert isinstance(inp, s.InputStmt) and inp.shape.values == (3, 299, 299)
    assert (inp.span.line, inp.span.col) == (2, 5)


def test_includes_blocks_and_network_in_one_module():
    module = parse('include "lib/a.inc"\ninclude "b.inc"\nblock a(n = 2):\n    conv 1x1 n\n'
                   "network t:\n    input 3x8x8\n", "main.inc")
    assert [i.path for i in module.includes] == ["lib/a.inc", "b.inc"]
    assert [(d.kind, d.name) for d in module.definitions] == [("block", "a"), ("network", "t")]
    assert module.file == "main.inc" and module.includes[1].span.line == 2


def test_comments_blank_lines_and_continuations_are_ignored():
    text = ("# leading comment\n\n"
            "network t:   # trailing comment\n"
            "    # a comment line inside the body\n"
            "    input 3x32x32\n\n"
            "    conv 3x3 \\\n"
            "        32 S   # continued\n"
            "# comment at column 1 inside the body\n"
            "    gap\n")
    net = only_network(text)
    chains = net.body[1:]
    assert [[e.name for e in c.elements] for c in chains] == [["conv"], ["gap"]]
    assert arg_values(chains[0].elements[0]) == [("pos", None, "3x3"), ("pos", None, 32), ("pos", None, "S")]


def test_crlf_line_endings_and_tab_indentation():
    assert [type(x) for x in only_network("network t:\r\n    input 3x8x8\r\n    gap\r\n").body] == [s.InputStmt, s.Chain]
    net = only_network("network t:\n\tinput 3x8x8\n        gap\n")  # a tab is 8 columns, like 8 spaces
    assert [type(x) for x in net.body] == [s.InputStmt, s.Chain]


def test_inline_bodies():
    net = only_network("network t:\n    input 3x8x8\n    repeat 2: conv 1x1 4 -> relu\nblock b: identity\n")
    (rep,) = net.body[1:]
    assert isinstance(rep, s.RepeatStmt) and [e.name for e in rep.body[0].elements] == ["conv", "relu"]
    block = parse("block b: identity\n").definitions[0]
    assert block.kind == "block" and block.body[0].elements[0].name == "identity"


# --- layers ----------------------------------------------------------------------------------

def test_conv_with_every_argument_form():
    el = element("conv 1x7 (2 * n) /2 S pad = (0, 3) groups = 2 dilation = 2 bias = yes bn = 0.001 "
                 "act = relu6 as c7")
    assert el.name == "conv" and el.label == "c7"
    assert arg_values(el) == [
        ("pos", None, "1x7"), ("pos", None, ("*", 2, "n")), ("stride", None, 2), ("pos", None, "S"),
        ("kw", "pad", (0, 3)), ("kw", "groups", 2), ("kw", "dilation", 2), ("kw", "bias", "yes"),
        ("kw", "bn", 0.001), ("kw", "act", "relu6")]
    assert el.label_span.col == el.span.end_col - 2  # `c7` ends the element


def test_four_tuple_padding_and_valid_padding():
    assert arg_values(element("conv 3x3 8 pad = (0, 1, 2, 3)")) == [
        ("pos", None, "3x3"), ("pos", None, 8), ("kw", "pad", (0, 1, 2, 3))]
    assert arg_values(element("maxpool 3x3 /2 V ceil = yes")) == [
        ("pos", None, "3x3"), ("stride", None, 2), ("pos", None, "V"), ("kw", "ceil", "yes")]


@pytest.mark.parametrize("text, name, args", [
    ("avgpool 3x3 /1 S count_pad = no", "avgpool",
     [("pos", None, "3x3"), ("stride", None, 1), ("pos", None, "S"), ("kw", "count_pad", "no")]),
    ("gap", "gap", []),
    ("lrn 5 alpha = 0.0001 beta = 0.75 k = 2", "lrn",
     [("pos", None, 5), ("kw", "alpha", 0.0001), ("kw", "beta", 0.75), ("kw", "k", 2)]),
    ("bn eps = 0.001", "bn", [("kw", "eps", 0.001)]),
    ("act tanh", "act", [("pos", None, "tanh")]),
    ("relu", "relu", []),
    ("dropout 0.2", "dropout", [("pos", None, 0.2)]),
    ("flatten", "flatten", []),
    ("linear classes bias = no act = relu", "linear",
     [("pos", None, "classes"), ("kw", "bias", "no"), ("kw", "act", "relu")]),
    ("softmax", "softmax", []),
    ("identity", "identity", []),
    ("conv 1x1 in.c act = off", "conv", [("pos", None, "1x1"), ("pos", None, "in.c"), ("kw", "act", "off")]),
])
def test_each_layer_parses_with_its_arguments(text, name, args):
    el = element(text)
    assert el.name == name and arg_values(el) == args


def test_chains_keep_their_order():
    (chain,) = body_of("gap -> flatten -> dropout 0.5 -> linear 10 -> softmax")
    assert [e.name for e in chain.elements] == ["gap", "flatten", "dropout", "linear", "softmax"]
    assert [e.span.col for e in chain.elements] == [5, 12, 23, 38, 51]


def test_call_arguments_positional_then_keyword():
    # `(` right after a name opens call arguments, never a tuple.
    assert arg_values(element("b(64, n = 32)")) == [("pos", None, 64), ("kw", "n", 32)]
    assert arg_values(element("b(64, 32)")) == [("pos", None, 64), ("pos", None, 32)]
    assert arg_values(element("b (64, 32,)")) == [("pos", None, 64), ("pos", None, 32)]
    assert arg_values(element("b()")) == []
    assert arg_values(element("b((1, 7), k = 3) as x")) == [("pos", None, (1, 7)), ("kw", "k", 3)]
    assert arg_values(element("conv(3x3, 32) /2")) == [("pos", None, "3x3"), ("pos", None, 32), ("stride", None, 2)]


# --- expressions -----------------------------------------------------------------------------

@pytest.mark.parametrize("expr, tree", [
    ("1 + 2 * 3", ("+", 1, ("*", 2, 3))),
    ("(1 + 2) * 3", ("*", ("+", 1, 2), 3)),
    ("10 - 2 - 3", ("-", ("-", 10, 2), 3)),
    ("7 // 2 * 2", ("*", ("//", 7, 2), 2)),
    ("7 / 2 % 3", ("%", ("/", 7, 2), 3)),
    ("-n + 1", ("+", ("neg", "n"), 1)),
    ("2 * -in.c", ("*", 2, ("neg", "in.c"))),
    ("max(in.h, 2 * k) - 1", ("-", ("max", "in.h", ("*", 2, "k")), 1)),
    ("divisible(n * 0.75, 8)", ("divisible", ("*", "n", 0.75), 8)),
    ("(1, 2 + 3)", (1, ("+", 2, 3))),
    ("1.5e-3", 0.0015),
    (".5", 0.5),
])
def test_expression_precedence_and_associativity(expr, tree):
    el = element(f"b(x = {expr})")
    assert plain(el.args[0].value) == tree


# --- composites and statements ---------------------------------------------------------------

def test_concat_branches_in_order_with_labels():
    (cat,) = body_of("concat as mixed:\n    branch: conv 1x1 96\n    branch as tower: conv 1x1 64 -> conv 3x3 96 S\n"
                     "    branch: avgpool 3x3 S count_pad = no -> conv 1x1 96")
    assert isinstance(cat, s.Composite) and cat.kind == "concat" and cat.label == "mixed"
    assert [b.label for b in cat.body] == [None, "tower", None]
    assert [[e.name for e in b.body[0].elements] for b in cat.body] == [["conv"], ["conv", "conv"], ["avgpool", "conv"]]
    assert [b.span.line for b in cat.body] == [4, 5, 6]


def test_add_and_residual_with_arguments_and_shortcut():
    add, res = body_of("add(act = relu):\n    branch: identity\n    branch: bn\n"
                       "residual(scale = 0.17, act = off) as r:\n    shortcut: conv 1x1 8 /2\n    conv 3x3 8 /2 S")
    assert add.kind == "add" and [(a.kind, a.name) for a in add.args] == [("kw", "act")]
    assert res.kind == "residual" and res.label == "r"
    assert [(a.name, plain(a.value)) for a in res.args] == [("scale", 0.17), ("act", "off")]
    shortcut, branch = res.body
    assert isinstance(shortcut, s.ShortcutStmt) and shortcut.body[0].elements[0].name == "conv"
    assert isinstance(branch, s.Chain)


def test_repeat_with_index_variable_and_group_name():
    (a, b) = body_of("repeat 4: inception_a\nrepeat (2 * n) as i named grp:\n    block35(scale = 0.17)")
    assert isinstance(a, s.RepeatStmt) and plain(a.count) == 4 and a.var is None and a.label is None
    assert plain(b.count) == ("*", 2, "n") and b.var == "i" and b.label == "grp"


def test_with_holds_several_defaults():
    (w,) = body_of("with conv(bn = 0.001, act = relu), avgpool(count_pad = no):\n    conv 1x1 8")
    assert [d.op for d in w.defaults] == ["conv", "avgpool"]
    assert [[(a.name, plain(a.value)) for a in d.args] for d in w.defaults] == [
        [("bn", 0.001), ("act", "relu")], [("count_pad", "no")]]
    assert isinstance(w.body[0], s.Chain)


def test_aux_heads_with_weight_and_tap():
    a, b = body_of("aux aux1(weight = 0.3) from stem: avgpool 5x5 /3 -> flatten\naux side: gap")
    assert (a.name, a.tap, [(x.name, plain(x.value)) for x in a.args]) == ("aux1", "stem", [("weight", 0.3)])
    assert (a.tap_span.line, a.tap_span.col) == (3, 33)
    assert (b.name, b.tap, b.args) == ("side", None, ())


def test_branch_and_shortcut_parse_anywhere_lowering_rejects_them():
    (b,) = body_of("branch: conv 1x1 3")
    assert isinstance(b, s.BranchStmt)


# --- spans -----------------------------------------------------------------------------------

def test_spans_point_at_line_and_column():
    net = only_network("network t:\n    input 3x32x32\n    conv 3x3 32 /2 V as stem -> maxpool 3x3 /2\n")
    conv, pool = net.body[1].elements
    assert (conv.span.line, conv.span.col, conv.span.end_col) == (3, 5, 29)
    assert (conv.name_span.col, conv.name_span.end_col) == (5, 9)
    assert (pool.span.line, pool.span.col) == (3, 33)
    stride = conv.args[2]
    assert stride.kind == "stride" and (stride.span.col, stride.span.end_col) == (17, 19)
    assert conv.args[1].value.span.col == 14 and conv.span.file == "t.inc"


# --- syntax errors ---------------------------------------------------------------------------

def syntax_error(text: str):
    with pytest.raises(IncdslError) as info:
        parse(text, "bad.inc")
    err = info.value
    (diag,) = err.diagnostics
    assert diag.severity == "error" and err.sources["bad.inc"].startswith(text.rstrip("\n"))
    return diag


@pytest.mark.parametrize("text, message, line, col", [
    ("network t:\n    input 3x32x32\n    conv 3x3 [32]\n", "unexpected character `[`", 3, 14),
    ("network t:\n    input 3x32x32\n    conv 3x3 32 ->\n", "unexpected end of line", 3, 19),
    ("network t\n    input 3x32x32\n", "unexpected end of line", 1, 10),
    ("network t:\n    input 3x32x32\n    conv 3x3 32 S )\n", "unexpected `)`", 3, 19),
    ("network t:\n    input 3x32x32\n    conv 3x3 32\n      conv 1x1 3\n", "unexpected indentation", 4, 7),
    ("network t:\n    input 3x32x32\n  conv 1x1 3\n", "indentation does not match any outer level", 3, 3),
    ("network t:\n    input 3x32x32\n    concat:\n", "expected an indented body after `:`", 3, 12),
    ("network t:", "expected an indented body after `:`, found end of file", 1, 11),
    ("network t:\n    input 3x32x32\n    repeat: conv 1x1 3\n", "unexpected `:`", 3, 11),
    ("network t:\n    input 3x32x32 -> conv 1x1 3\n", "unexpected `->`", 2, 19),
    ("foo\n", "unknown statement `foo`", 1, 1),
    ('include "lib.inc\n', 'unexpected character `"`', 1, 9),
    ("network t(a = ):\n    input 3x8x8\n", "unexpected `)`", 1, 15),
    ("network t:\n    input 3x8x8\n    conv 1x1 (" + "9" * 200 + ")\n", "number too large: 200 digits", 3, 15),
    ("network t:\n    input 3x8x8\n    gap \x00\n", "spec contains a NUL byte", 3, 9),
    ("network t:\n    input 3x8x8\n    gap \x07\n", "unexpected character `\\x07`", 3, 9),
])
def test_syntax_errors_say_what_and_where(text, message, line, col):
    diag = syntax_error(text)
    assert diag.message.startswith(message), diag.message
    assert (diag.span.line, diag.span.col) == (line, col)
    assert diag.span.file == "bad.inc"


def test_syntax_errors_name_what_was_expected_in_plain_words():
    diag = syntax_error("network t:\n    input 3x8x8\n    conv 1x1 (3 +\n")
    notes = " ".join(diag.notes)
    assert "expected" in notes
    assert "__ANON" not in notes and "_NL" not in notes and "RPAR" not in notes
    diag = syntax_error("network t:\n    input 3x8x8\n    conv 3x3 8 S as\n")
    assert diag.notes == ("expected a name",)
    assert "network tiny" in diag.hint  # a parse error shows a valid example


def test_unexpected_indentation_hint_names_the_constructs_with_bodies():
    diag = syntax_error("network t:\n    input 3x8x8\n        gap\n")
    assert "`concat`" in diag.hint and "`repeat`" in diag.hint


# --- the parser cache ------------------------------------------------------------------------

def test_parser_tables_are_cached_per_user_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch, capfd):
    import os

    from incdsl.lang.parse import build_parser, cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = cache_dir()
    assert folder == str(tmp_path / "incdsl") and os.stat(folder).st_mode & 0o777 == 0o700
    build_parser(folder)
    (path,) = [os.path.join(folder, f) for f in os.listdir(folder)]
    assert os.path.getsize(path) > 1000
    with open(path, "wb") as f:
        f.write(b"not a cache\n")
    parser = build_parser(folder)  # a damaged cache is ignored, the tables are built again and saved
    assert parser.parse("network t:\n    input 3x8x8\n").data == "start"
    assert os.path.getsize(path) > 1000
    assert build_parser(folder).parse("network t:\n    input 3x8x8\n").data == "start"  # read from the cache
    assert capfd.readouterr().err == ""  # silently
    blocker = tmp_path / "plain_file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # no cache dir can be made there
    assert cache_dir() is None
