"""`python -m chalicelib.cli` (the contract's stable entry) and the `edge-billing` console script.

The commands live in chalicelib/entrypoints/cli.py; this module only keeps the documented name.
"""

from chalicelib.entrypoints.cli import main

if __name__ == "__main__":
    main()
