"""The way out that a compiled network's `InputShapeError` gives, followed to the letter, builds
the same network at the other size: it repeats the `--set` values / `params=` the network was
built with (and says nothing of them when there were none). Under torch.compile, dynamic sizes
included, the error is still ours (or, with fullgraph=True, Dynamo's quoting ours whole).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

torch = pytest.importorskip("torch")
import incdsl  # noqa: E402
from incdsl.cli import main  # noqa: E402
from incdsl.lang.values import parse_value  # noqa: E402
from incdsl.torch.layers import InputShapeError, set_word  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NIN = ROOT / "specs" / "zoo" / "cifar" / "nin.inc"  # nin(classes = 10, bn = no, dropout = 0.5), 3x32x32
WEE = "network wee(w = 4, act = relu):\n    input 3x8x8\n    conv 3x3 w S act = act\n    gap -> flatten -> linear 2\n"


def problem(model, x) -> str:
    with pytest.raises(InputShapeError) as info, torch.no_grad():
        model(x)
    return str(info.value)


def python_hint(text: str) -> str:
    return re.search(r"incdsl\.to_torch\(incdsl\.load\(.*?\)\)(?= or)", text).group(0)


def command_hint(text: str) -> list:
    return shlex.split(re.search(r"`(incdsl compile [^`]*)`", text).group(1))[1:]


def test_the_hint_repeats_the_settings_and_following_it_builds_the_same_network(tmp_path, capsys):
    model = incdsl.to_torch(incdsl.load(str(NIN), params={"classes": 100, "bn": True}), seed=0)
    text = problem(model.eval(), torch.randn(2, 3, 64, 64))
    built = python_hint(text)
    assert built == "incdsl.to_torch(incdsl.load('nin.inc', params={'bn': True, 'classes': 100}, input=(3, 64, 64)))"
    bigger = eval(built.replace("'nin.inc'", repr(str(NIN))), {"incdsl": incdsl})
    assert bigger.input_shape == (3, 64, 64)
    bigger.load_state_dict(model.state_dict())  # the same layers: batch norm, 100 class maps

    argv = command_hint(text)
    assert argv == ["compile", "nin.inc", "--set", "bn=yes", "--set", "classes=100", "--input", "3x64x64"]
    out = tmp_path / "nin64.py"
    assert main([argv[0], str(NIN), *argv[2:], "-o", str(out)]) == 0
    capsys.readouterr()
    source = out.read_text(encoding="utf-8")
    assert "self.input_shape = (3, 64, 64)" in source and "ConvBnAct(192, 100, 1, bn_eps=1e-05" in source
    assert "self.spec_settings = {'bn': True, 'classes': 100}" in source


def test_without_settings_the_hint_has_none():
    text = problem(incdsl.to_torch(incdsl.load(str(NIN)), seed=0), torch.randn(1, 3, 16, 16))
    assert "incdsl.load('nin.inc', input=(3, 16, 16))" in text and "--set" not in text
    assert "params=" not in text


def test_a_spec_given_as_text_still_repeats_its_settings():
    text = problem(incdsl.to_torch(incdsl.load(WEE, params={"act": "gelu"}), seed=0), torch.randn(1, 3, 9, 9))
    assert "incdsl.load(SPEC, params={'act': 'gelu'}, input=(3, 9, 9))" in text
    assert "`incdsl compile SPEC --set act=gelu --input 3x9x9`" in text


def test_the_standalone_file_keeps_the_settings(tmp_path, capsys):
    import importlib.util
    out = tmp_path / "wee.py"
    spec = tmp_path / "wee.inc"
    spec.write_text(WEE, encoding="utf-8")
    assert main(["compile", str(spec), "--set", "w=6", "-o", str(out)]) == 0
    capsys.readouterr()
    loader = importlib.util.spec_from_file_location("wee_standalone", out)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    with pytest.raises(module.InputShapeError, match=re.escape("`incdsl compile wee.inc --set w=6 --input 3x16x16`")):
        module.Wee(seed=0)(torch.randn(1, 3, 16, 16))


@given(st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=False, allow_infinity=False, width=32).filter(lambda f: f != int(f)),
                 st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
                     lambda w: w.lower() not in ("yes", "no", "on", "off", "true", "false", "none", "nan", "inf",
                                                 "infinity"))))
def test_a_set_word_reads_back_as_its_value(value):
    """What the hint writes after `--set NAME=` is what `--set` reads, through a shell."""
    [word] = shlex.split(set_word(value))
    assert parse_value(word) == value and isinstance(parse_value(word), type(value))


def test_a_set_word_with_shell_characters_is_quoted():
    assert shlex.split(set_word("a b;c'd")) == ["a b;c'd"]
    assert set_word((3, 3)) == "3x3" and set_word(None) == "none" and set_word(False) == "no"


# --- torch.compile ---------------------------------------------------------------------------

@pytest.fixture
def wee():
    return incdsl.to_torch(incdsl.load(WEE, params={"w": 4}), seed=0).eval()


@pytest.mark.slow  # torch.compile's first use takes seconds
@pytest.mark.parametrize("first", ["right size first", "wrong size first"])
def test_dynamic_shapes_with_fullgraph_quote_our_error_whole(wee, first):
    """Dynamo formatted our message with symbolic sizes and failed on it (`tp_repr_impl not
    implemented`): the user saw neither the shapes nor the way out."""
    torch._dynamo.reset()
    compiled = torch.compile(wee, dynamic=True, fullgraph=True, backend="eager")
    with torch.no_grad():
        if first == "right size first":
            compiled(torch.randn(2, 3, 8, 8))
        for x, says in [(torch.randn(2, 3, 16, 16), "got shape (2, 3, 16, 16): for 3x16x16 images build it from its "
                         "spec at that size, incdsl.to_torch(incdsl.load(SPEC, params={'w': 4}, input=(3, 16, 16)))"),
                        (torch.randn(3, 8, 8), "got one image of shape (3, 8, 8): add the batch dimension"),
                        (torch.randn(2, 8, 8, 3), "got shape (2, 8, 8, 3), channels last")]:
            with pytest.raises(Exception) as info:
                compiled(x)
            assert "InputShapeError" in str(info.value) and says in str(info.value)
            assert "network `wee` was compiled for 3x8x8 images" in str(info.value)
        for n in (1, 5):  # the right size still runs, at any batch
            torch.testing.assert_close(compiled(torch.randn(n, 3, 8, 8)).shape, torch.Size([n, 2]))


@pytest.mark.slow
def test_dynamic_shapes_without_fullgraph_raise_our_error(wee):
    torch._dynamo.reset()
    compiled = torch.compile(wee, dynamic=True, backend="eager")
    with torch.no_grad():
        compiled(torch.randn(2, 3, 8, 8))
        with pytest.raises(InputShapeError, match=re.escape("got shape (4, 3, 12, 12): for 3x12x12 images")):
            compiled(torch.randn(4, 3, 12, 12))
        assert compiled(torch.randn(3, 3, 8, 8)).shape == (3, 2)
