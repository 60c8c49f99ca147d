#!/usr/bin/env perl
# Split an scp/map file into contiguous parts (Kaldi interface); thin wrapper over
# python -m toolkit.bin.split_scp.
# Usage: utils/split_scp.pl [--utt2spk=<utt2spk>] <in.scp> <out1.scp> <out2.scp> ...
#        utils/split_scp.pl [--utt2spk=<utt2spk>] -j <num-jobs> <job-id> <in.scp> <out.scp>
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = dirname(dirname(abs_path($0)));
$ENV{PYTHONPATH} = defined $ENV{PYTHONPATH} && $ENV{PYTHONPATH} ne "" ? "$root:$ENV{PYTHONPATH}" : $root;
my $python = $ENV{PYTHON} // "python3";
exec($python, "-m", "toolkit.bin.split_scp", @ARGV) or die "split_scp.pl: cannot run $python: $!\n";
