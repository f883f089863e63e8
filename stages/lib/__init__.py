"""The library the stages and the two user commands call, one concern a module, in layers: words and facts, the
process (files, params, command line, runtime), data, models, judging data and models, and what a user reads.
docs/development.md lists every module in its layer; tests/test_layers.py holds that list to the imports."""
