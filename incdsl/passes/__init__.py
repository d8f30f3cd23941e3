"""Passes over the IR: small pure functions that read the graph and return results."""
