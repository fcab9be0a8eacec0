"""Placement optimizer for edge-cloud ML ensembles.

The stages, one folder each (README, Architecture): app -> model -> profiling -> solver -> plan
-> report / bundle; local runs a plan on this machine; cli is the command line; pipeline.py
joins the stages of `planner solve`.
"""
