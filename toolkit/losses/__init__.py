"""Losses: the best-alignment consistency loss and the HAT transducer loss.

best_alignment            public API: best_alignment_loss, best_alignment, AlignmentPath
best_alignment_numba      CPU DP + backtrace kernel (numba, parallel over layer x example)
best_alignment_cuda       GPU kernel (numba.cuda, one block per layer x example)
best_alignment_reference  PyTorch frame loop: the reference and benchmark baseline
transducer                HAT transducer loss
"""
