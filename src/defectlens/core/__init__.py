"""The bottom layer: what every stage shares and nothing else.

Errors, the :class:`~defectlens.core.spec.ModelSpec`, the decision rule (softmax with temperature,
the threshold decision, the test-time-augmentation views), the artifact formats (checkpoint and
bundle read/write), progress events and the machine description. Nothing here imports another
defectlens layer, and nothing imports torch at module level.
"""
