"""ATLAS pipeline: train teacher models that make a frozen student better and never worse.

One folder per layer; a module imports only from its own folder and from lower layers (tests/test_layers.py):

    core -> config -> llm -> teaching -> data, rim -> training -> stages -> ops -> cli   (then flows/, outside)

This file holds only the version and imports nothing of the package.
"""

__version__ = "0.1.0"
