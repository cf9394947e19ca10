"""Diagnostics of measured runs, kept because the task pages quote their numbers and commands.

Each answers one question about a run (``python -m tasks.diagnostics.<name> --help``): ``noise_ceiling``,
``blend``, ``edit_ensemble``, ``inr_weights``, ``flow_reconstruction``, ``latent_projection``, ``optimizer_steps``."""
