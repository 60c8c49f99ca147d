#!/usr/bin/env perl
# spk2utt -> utt2spk, one line per utterance in input order (Kaldi's script). Reads the
# files given, or stdin.
# Usage: utils/spk2utt_to_utt2spk.pl data/x/spk2utt > data/x/utt2spk
use strict;
use warnings;

while (my $line = <>) {
  my @F = split(' ', $line);
  die "spk2utt_to_utt2spk.pl: $ARGV:$.: expected '<spk> <utt1> [<utt2> ...]', got: $line" unless @F >= 2;
  my $spk = shift @F;
  print "$_ $spk\n" for @F;
} continue { close ARGV if eof; }
