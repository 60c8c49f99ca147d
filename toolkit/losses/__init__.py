"""Losses: the best-alignment consistency loss and the HAT transducer loss.

best_alignment            public API: best_alignment_loss, best_alignment, AlignmentPath
best_alignment_numba      CPU DP + backtrace kernel (numba, parallel over layer x example)
best_alignment_cuda       GPU kernel (numba.cuda, one block per layer x example)
best_alignment_reference  PyTorch frame loop: the reference and benchmark baseline
transducer                HAT transducer loss; its DP (CPU numba, or CUDA via transducer_cuda)
transducer_cuda           GPU transducer forward-backward (numba.cuda, anti-diagonals, float32)
pruned_transducer         pruned HAT transducer loss: simple joiner, window bounds, loss on the window
"""
import os

import numba

# numba's default "omp" threading layer loads libgomp.so.1, which resolves to the copy torch
# already loaded: the two then share one OpenMP runtime, and numba's thread pool made torch's
# one-thread training run a team of two whose idle thread spins (two such processes on two
# cores fell to 0.1 steps/s). The workqueue layer keeps numba's threads to itself; they sleep
# when idle. NUMBA_THREADING_LAYER in the environment still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
