"""Workflows: the only place where stages meet (train then evaluate, evaluate a run, the demo,
predicting a folder). The command line, the web service and the inspector call these."""
