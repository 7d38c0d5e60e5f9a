"""Compile checked programs and evaluate events against them."""
