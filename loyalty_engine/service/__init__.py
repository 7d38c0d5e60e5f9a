"""Stateful processing on a store: the Engine facade and the steps it is made of."""
