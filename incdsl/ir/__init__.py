"""The IR: the graph and its invariants, lowering from the AST, the loaded network, names."""
