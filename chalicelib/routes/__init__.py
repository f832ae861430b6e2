"""HTTP entry points, one blueprint per concern; app.py only registers them."""
