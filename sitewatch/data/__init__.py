"""Public building datasets: readers, chip cache, transforms and the Lightning data module."""
