"""One module per ``cnnlab`` command, each with the same two steps.

``check_config(cfg)`` checks a composed config and raises a one-line ``UsageError`` before
anything runs; ``task(cfg)`` runs the command (under ``hydra.main``) and returns its exit code.
``cnnlab.cli`` lists them in one table; ``cnnlab.config.launch`` runs them.
"""
