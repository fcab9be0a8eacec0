"""Integers in, placements out: the solver's Instance, the constraint keys, the exact CP-SAT
model, the independent evaluator, the baselines, the explanation of infeasibility, and the
exact latency-cost Pareto front.

Imports neither TVM nor the app schema nor any other stage of the planner.
"""
