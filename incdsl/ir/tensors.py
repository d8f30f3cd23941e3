"""Named tensors: a labelled tensor (`as NAME`), or `in`, read again later in the same block.

`take NAME` (a chain element) makes that tensor the current one; `branch from NAME:` starts a
join's branch from it. A label is seen from its own scope and the scopes nested in it, after
the statement that made it, and never across a block's boundary (a block reads its callers'
tensors only through its input): so one block can carry several streams, as ResNet in
ResNet's residual and transient streams. A mixin of `lower.Lowerer`.
"""
from __future__ import annotations

from ..diagnostics import Span, did_you_mean
from ..lang import syntax as s


class NamedTensors:
    def tensor(self, name: str, span: Span, ctx) -> str:
        """The node a label (or `in`) names where lowering stands; an error if none is visible."""
        if name == "in":
            return ctx.in_node
        scope = ctx.scope
        while True:  # the nearest enclosing scope wins (within it, the latest statement): depth look-ups, not a scan
            node = self.scoped_labels.get((scope, name))
            if node is not None:
                return node
            if scope == ctx.home or not scope:
                break
            scope = scope.rpartition("/")[0]
        self.fail(f"no tensor labelled `{name}` is visible here", span, ctx, notes=self._hidden_notes(name, ctx),
                  hint=did_you_mean(name, self.visible_labels(ctx)) or
                  f"label a layer earlier in this block with `as {name}`, or read the block's input as `in`")

    def visible_labels(self, ctx) -> list[str]:
        return ["in"] + sorted(n for n, found in self.labels.items() if any(visible(f[0], ctx.scope, ctx.home) for f in found))

    def _hidden_notes(self, name: str, ctx) -> list[str]:
        return [f"`{name}` labels `{node}` ({span}), whose scope ends before this point or is another block's"
                for _, node, span in self.labels.get(name, ())[:3]]

    def lower_take(self, el: s.Element, ctx) -> str:
        """`take NAME`: the current tensor becomes the one NAME labels."""
        if len(el.args) != 1 or el.args[0].kind != "pos" or not isinstance(el.args[0].value, s.Name):
            self.fail("`take` reads one labelled tensor", el.span, ctx,
                      hint="write `take NAME` with a label given earlier by `as NAME` (or `take in`)")
        arg = el.args[0].value
        node = self.tensor(arg.id, arg.span, ctx)
        self.rewired = True
        return self.note_label(el.label, el.label_span, ctx, node)

    def check_join_args(self, stmt: s.Composite, ctx) -> None:
        """`concat(x):` with `x` a label, not a value: the tensors a join reads are its branches."""
        for arg in stmt.args:
            if arg.kind == "pos" and isinstance(arg.value, s.Name) and arg.value.id not in ctx.env \
                    and (arg.value.id in self.labels or arg.value.id == "in"):
                name = arg.value.id
                self.fail(f"`{stmt.kind}` takes its tensors from its branches, not in parentheses", arg.span, ctx,
                          hint=f"write `{stmt.kind}:` and, below it, `branch from {name}:` for each tensor it joins "
                               f"(`branch from {name}: identity` joins `{name}` as it is)")

    def branch_input(self, b: s.BranchStmt, cur: str, ctx) -> str:
        """What a join's branch reads: the join's input, or the tensor of `branch from NAME:`."""
        if not b.source:
            return cur
        self.rewired = True
        return self.tensor(b.source, b.source_span, ctx)

    def check_all_used(self, output: str) -> None:
        """After `take` or `branch from`: every tensor must lead somewhere (the output, another
        layer, an auxiliary head); one left behind is a mistake, and would compile to dead code."""
        used = getattr(self.sink, "used", None)
        if used is None:  # a sink without edges (search's cost) cannot tell
            return
        ends = {output} | {head["output"] for head in self.sink.graph.get("aux", ())}
        for name in self.sink.names():
            if name not in ends and not used(name):
                data = self.sink.node(name)
                self.fail(f"the tensor of `{name}` is computed but never used", data["span"], None,
                          hint="every layer must lead to the output: `take` and `branch from` read an earlier "
                               "tensor and leave the current one behind, so use it (in a join, say) or drop the layer")


def visible(scope: str, here: str, home: str) -> bool:
    """Whether a label made in `scope` is seen from `here`, inside the block instance at `home`."""
    inside_home = not home or scope == home or scope.startswith(home + "/")
    encloses = not scope or here == scope or here.startswith(scope + "/")
    return inside_home and encloses
