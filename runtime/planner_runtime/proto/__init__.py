"""Generated Open Inference Protocol (KServe v2) stubs; see generate.py.

Never import these in a process that also imports tritonclient: both register the
`inference.*` messages in protobuf's default pool and the second import fails.
"""
