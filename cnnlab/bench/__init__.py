"""Timing: layer cases, the timer, layer and model measurements, the report. The
``cnnlab bench`` command is :mod:`cnnlab.commands.bench`."""
