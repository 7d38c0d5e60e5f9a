"""The rules language: grammar, parser, syntax tree, schema, checker."""
