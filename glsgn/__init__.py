"""glsgn: Global-Local Stepwise Generative Network for ultra high-resolution image restoration."""

__version__ = "0.1.0"
