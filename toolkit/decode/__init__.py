"""Decoding: greedy and beam search for HAT transducers, streaming search sessions."""
