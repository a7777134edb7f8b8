"""Entry module required by componentize-py; the source lives in ingest.py."""
