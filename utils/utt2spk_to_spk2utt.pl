#!/usr/bin/env perl
# utt2spk -> spk2utt: one line per speaker, in order of first appearance, utterances in
# input order (Kaldi's script). Reads the files given, or stdin.
# Usage: utils/utt2spk_to_spk2utt.pl data/x/utt2spk > data/x/spk2utt
use strict;
use warnings;

my (@spks, %utts);
while (my $line = <>) {
  my @F = split(' ', $line);
  die "utt2spk_to_spk2utt.pl: $ARGV:$.: expected '<utt> <spk>', got: $line" unless @F == 2;
  my ($utt, $spk) = @F;
  push @spks, $spk unless exists $utts{$spk};
  push @{$utts{$spk}}, $utt;
} continue { close ARGV if eof; }  # reset $. per file so line numbers are right
print "$_ @{$utts{$_}}\n" for @spks;
