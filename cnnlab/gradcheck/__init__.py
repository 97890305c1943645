"""Gradient checks: numeric differences and the relative error, layer and whole-model checks,
records and the table. The ``cnnlab gradcheck`` command is :mod:`cnnlab.commands.gradcheck`."""
