"""jobd: a job daemon for research software containers."""

__version__ = "0.1.0"
