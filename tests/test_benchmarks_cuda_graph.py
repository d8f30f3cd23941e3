"""benchmarks/runtime.py --cuda-graph: inference replayed from CUDA graphs, ours and the
reference alike. The recorder is replaced here (no GPU needed); tests/test_cuda_graph.py checks
the recorder itself."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from benchlib import QUICK, runtime, table_rows, tiny  # noqa: E402,F401  (fixtures)


def test_cuda_graph_rows_time_inference_and_mark_training(tiny, capsys, monkeypatch):
    captured = []

    def fake_capture(model, x):
        captured.append((type(model).__name__, model.training, torch.is_grad_enabled()))
        return lambda x: model(x)
    monkeypatch.setattr(tiny, "cuda_graphs_possible", lambda device: True)
    monkeypatch.setattr(tiny, "capture", fake_capture)
    assert tiny.main([*QUICK, "--cuda-graph"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [(r[1], r[2]) for r in rows] == [("infer", "eager"), ("train", "eager"), ("infer", "cuda-graph"),
                                            ("train", "cuda-graph")]
    assert float(rows[2][6]) > 0
    assert rows[3][6] == "-" and "CUDA graphs: inference only" in rows[3][9]
    assert len(captured) == 2 and all(not training and not grad for _, training, grad in captured)  # ref and ours


def test_cuda_graph_on_the_cpu_is_a_usage_error(runtime, capsys):
    with pytest.raises(SystemExit) as info:
        runtime.main([*QUICK[:2], "--cuda-graph"])
    assert info.value.code == 2
    assert "replays CUDA graphs: use it with --device cuda" in capsys.readouterr().err


def test_reference_is_captured_by_the_same_recorder(runtime, monkeypatch):
    """A module without `capture` (timm's, torchvision's) goes to `CapturedGraph`, which refuses the CPU."""
    model = torch.nn.Conv2d(3, 3, 1).eval()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        runtime.capture(model, torch.randn(1, 3, 4, 4))
