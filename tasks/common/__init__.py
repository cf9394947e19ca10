"""What the tasks share: the command-line harness, zoo splits, features, models, baselines, metrics,
scaling, reports and the seed summary (``python -m tasks.common.summarize``)."""
