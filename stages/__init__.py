"""DVC pipeline stages: each module is one stage, run as `python -m stages.<name>`."""

from stages.lib.runtime import quiet_tensorflow_import

# Before any stage, predict or benchmark imports TensorFlow: its start-up lines would hide the stage's own output.
quiet_tensorflow_import()
