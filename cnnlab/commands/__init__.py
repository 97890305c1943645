"""One module per ``cnnlab`` command, each with the same two steps.

``check_config(cfg) -> plan`` checks a composed config, raising a one-line ``UsageError``
before anything runs, and returns what it built on the way (the resolved backends, the net,
the checkpoint it read): the command's plan. ``task(cfg, plan)`` runs the command (under
``hydra.main``) from that plan and returns its exit code; given None (a sweep's job, which may
run in another process), it checks its own config first. ``cnnlab.cli`` lists the commands in
one table; ``cnnlab.config.launch`` runs them.

``runs.py`` (``cnnlab runs``) is the exception: it takes no config and makes no run
directory, only reads what runs left, so it is a Typer app of its own (``cnnlab.cli.APPS``).
``predict.py`` and ``export.py`` run a saved model and make no run directory either: Typer
commands (``cnnlab.cli.SAVED_MODEL_COMMANDS``) whose ``key=value`` arguments are composed and
checked as overrides, then planned by eval's ``check_config`` (``saved.py``).
"""
