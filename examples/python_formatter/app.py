"""Entry module required by componentize-py; the formatter lives in format.py."""
