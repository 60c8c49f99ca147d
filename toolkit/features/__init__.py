"""Acoustic front end: audio reading, Kaldi fbank, kaldiio ark/scp dumping, global CMVN, SpecAugment."""
