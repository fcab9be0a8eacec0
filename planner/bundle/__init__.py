"""OUT/sites/<site>/ for a solved plan (bundle.yaml, the build the plan chose of each model placed
there: a TVM library or an ONNX file, and python steps) and OUT/deploy/ (Kubernetes, Compose).

Imports the plan, profiling, model and app stages and the runtime's bundle format.
"""
