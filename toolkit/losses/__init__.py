"""Losses: the best-alignment consistency loss (``best_alignment``) and the HAT transducer loss."""
