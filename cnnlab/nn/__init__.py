"""Executors: run a layer tree (:mod:`cnnlab.ops.tree`) on numpy kernels or as a torch module."""
