"""A trained model outside cnnlab: a plain PyTorch module (``model.py`` and ``model.pt``, which
need torch only) and an ONNX file (with the ``onnx`` extra), as ``cnnlab export`` writes them.

:mod:`cnnlab.export.standalone` is the torch-only builder copied into ``model.py``;
:mod:`cnnlab.export.module` turns a layer tree into the literal spec it builds from and a
checkpoint into its state dict; :mod:`cnnlab.export.to_onnx` writes and runs the ONNX file.
"""
