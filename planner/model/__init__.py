"""The ensemble as the later stages see it: the graph of sources, nodes and sinks (networkx),
the link network and its routes, the checks on both, and `open_app(path) -> CheckedApp`, the
one entry to a checked app that every command starts from.

Imports the app stage only.
"""
