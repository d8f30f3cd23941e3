"""The language: grammar, AST with spans, parser, expression values."""
