"""Services: orchestrate the ports (chalicelib/ports.py) around the pure core."""
