"""OUT/sites/<site>/ for a solved plan (bundle.yaml, the compiled libraries and python steps of
the models placed there) and OUT/deploy/ (Kubernetes, Compose).

Imports the plan, profiling, model and app stages and the runtime's bundle format.
"""
