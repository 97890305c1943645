"""What training runs left behind, read back: their names (:mod:`.naming`), how each one ended
(:mod:`.status`), a table of many (:mod:`.table`) and a side-by-side view of a few
(:mod:`.compare`). ``cnnlab runs`` (:mod:`cnnlab.commands.runs`) shows them.

Nothing here imports numpy, torch or Hydra: listing runs reads JSON and YAML files only.
"""
