"""Secondary labelled spans: "first defined here" with its own source line, as rustc shows it."""
from __future__ import annotations

from incdsl.diagnostics import Diagnostic, Label, Span, render

SOURCE = "".join(f"line {i}\n" for i in range(1, 13)).replace("line 3", "block stem:").replace("line 12", "block stem:")


def test_label_shows_its_line_and_dashes_under_its_span():
    diag = Diagnostic("error", "block `stem` is defined twice", Span("a.inc", 12, 7, 12, 11),
                      labels=(Label(Span("a.inc", 3, 7, 3, 11), "first defined here"),))
    assert render(diag, {"a.inc": SOURCE}).splitlines() == [
        "a.inc:12:7: error: block `stem` is defined twice",
        "   |",
        "12 | block stem:",
        "   |       ^^^^",
        "   |",
        "  ::: a.inc:3:7",
        "   |",
        " 3 | block stem:",
        "   |       ---- first defined here",
    ]


def test_label_without_its_source_is_a_note():
    diag = Diagnostic("error", "twice", Span("a.inc", 3, 1, 3, 6), labels=(Label(Span("gone.inc", 2, 1, 2, 4), "first here"),))
    assert render(diag, {"a.inc": SOURCE}).splitlines()[-1] == "  = note: first here: gone.inc:2:1"


def test_labels_keep_the_order_given_before_notes_and_hint():
    diag = Diagnostic("error", "x", Span("a.inc", 3, 1, 3, 2), ("a note",), "a hint",
                      (Label(Span("a.inc", 1, 1, 1, 2), "one"), Label(Span("a.inc", 2, 1, 2, 2), "two")))
    text = render(diag, {"a.inc": SOURCE})
    assert text.index("- one") < text.index("- two") < text.index("= note: a note") < text.index("= hint: a hint")
