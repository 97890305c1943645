"""cnnlab: learn, check and time convolutional networks built from scratch."""

import os

__version__ = "0.1.0"

# OpenBLAS's idle threads spin for about 0.1 s (2^28 cycles) after every multi-threaded call,
# holding a core that torch's threads or the im2col workers need next: a LeNet training step on
# 2 cores took 48 ms instead of 36 (measured). 2^4 cycles puts them to sleep at once. OpenBLAS
# reads this when it loads, so it is set before numpy is imported; a value already set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
