"""What a run shows about itself: GPU readings, reward health, the run report, and the
redaction that keeps secrets out of everything a run writes or prints.

Nothing here is imported at CLI start; the training worker adds ``callbacks`` to its trainer.
"""
