"""cnnlab: learn, check and time convolutional networks built from scratch."""

__version__ = "0.1.0"
