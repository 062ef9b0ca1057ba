"""Chainlit rendering and handlers: the only package besides app.py that imports chainlit."""
