"""Metrics files, console tables, pandas tables and matplotlib figures."""
