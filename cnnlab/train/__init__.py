"""Training: the loop, the engines (numpy and torch), optimizers, checkpoints, TensorBoard and
data parallelism. The ``cnnlab train`` command is :mod:`cnnlab.commands.train`."""
