"""DVC pipeline stages: each module is one stage, run as `python -m stages.<name>`."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notes, oneDNN) hides the stage's own output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
