"""From a checked app and its profiles to the solver's integer Instance (problem), and from the
solver's solution to plan.json (schema, make); reading plan.json back (load), comparing two
plans (diff), a sweep's result (sweep).

Imports the solver, profiling, model and app stages; never a report or a bundle.
"""
