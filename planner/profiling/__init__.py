"""Numbers for every (node, candidate site), each with its provenance: ONNX import with shape
folding, TVM compiles per target (compile, cpu_schedule, export), measurement on this host or
over TVM RPC, the roofline estimate, MetaSchedule tuning, python steps, the typed cache, and
the app-level stage (app_profiles) whose result also carries the compiled executables.

Imports the model and app stages; TVM only inside the functions that compile or measure.
"""
