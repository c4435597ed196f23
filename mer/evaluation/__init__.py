"""Evaluation of LOSO predictions: metrics, per-subject reports and plots (NumPy/pandas only)."""
