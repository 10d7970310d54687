"""The paper's experiment on a real model (see run.py)."""
