"""ingredients_model: the Ingredients multi-identity video model (diffusers-style), usable on its own."""

__version__ = "0.1.0"
