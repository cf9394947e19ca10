"""Tasks built on nngraph's public API: INR classification, accuracy prediction, INR editing, and the demo.

Run one with ``python -m tasks.<name> --help`` or ``nngraph task <name> ...``; ``python -m tasks.demo``
builds small zoos, trains every task briefly and prints one results table.
"""
TASKS = ("inr_classification", "accuracy_prediction", "inr_editing")
