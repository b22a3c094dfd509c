"""MABIM: multi-echelon inventory management in pure JAX."""
