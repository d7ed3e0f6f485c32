"""storyreel: storyboard and batch video production with real, photographed people."""

__version__ = "0.1.0"
