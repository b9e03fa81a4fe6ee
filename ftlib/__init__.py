"""ftlib: the library behind the fine-tuning curriculum."""

__version__ = "0.1.0"
