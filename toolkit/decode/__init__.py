"""Decoding: greedy and beam search for HAT transducers, streaming sessions, decode runs and their job files."""
