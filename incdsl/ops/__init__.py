"""The table of operations: everything about each kind of layer, one module per family.

`table.OPS` maps a node kind to its `Op` record (see `base.py`); every stage (lowering, shape
and cost passes, `--against`, diagrams, the torch backend, the search cost evaluator) asks the
record instead of keeping a table of its own. Adding a kind is one new module here, listed in
`table.FAMILIES`.

This package file imports nothing, so `values.py` (which the families import for value types)
can read the table lazily without an import cycle.
"""
