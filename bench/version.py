"""The package's version (pyproject.toml's); bench/__init__.py and everything that prints or records it read it here."""
__version__ = "0.1.0"
