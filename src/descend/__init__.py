"""descend: gradient-descent optimizers built from parts, and a lab to see why they behave
as they do."""

__version__ = "0.1.0"
