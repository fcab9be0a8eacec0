"""app.yaml in, a valid app out: the schema (spec), YAML with its line numbers, `--set`
overrides, the loader, the cross-reference checks, and the sites resolved against the hardware
target catalog (targets, shipped as package data in catalog/).

Imports nothing from the other stages, nor OR-Tools or TVM (validation stays fast).
"""
