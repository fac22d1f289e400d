"""Estimators (sklearn contract): the LightGBM models and their linear baselines."""
