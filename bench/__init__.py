"""filter-sparsity-bench: benchmark structured-sparsity regularizers for CNNs."""
__version__ = "0.1.0"
