"""One module per workflow step; each is importable and runnable with ``python -m``."""
