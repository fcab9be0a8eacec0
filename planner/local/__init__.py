"""The plan on this machine: the ensemble run in one process (run), its placement predicted for
this machine (prediction), the site bundles served on loopback (up, sites), and requests timed
through them (bench).

Imports the stages below it and the runtime; nothing imports it but the command line.
"""
