"""Retraining on a new cohort: validation, drift, a challenger, a bootstrap-backed gate.

Modules: :mod:`config` (retrain.toml), :mod:`drift` and :mod:`bootstrap` (pure statistics),
:mod:`gate` (the pure decision), :mod:`job` (orchestration). Importing the package does nothing.
"""
