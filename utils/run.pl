#!/usr/bin/env perl
# Run a command, or an array of commands, on this machine in parallel (Kaldi's run.pl).
#
# Usage: run.pl [options] [JOB=1:N] log/name.JOB.log command args...
#   e.g. run.pl --max-jobs-run 4 JOB=1:8 exp/log/dump.JOB.log python -m x --part JOB
#
# Every occurrence of the job variable (JOB above; any name works) in the log name and
# in the command is replaced by the job index. Each log starts with the command line and
# the start time and ends with "# Accounting: time=S threads=T" and
# "# Ended (code C) at DATE, elapsed time S seconds". Exits 1 if any job failed, naming
# the failed jobs' logs on stderr. SIGTERM/SIGINT/SIGHUP stop every running job (each
# job's whole process group) before run.pl exits 128+N.
# Options: --max-jobs-run N (at most N jobs at once; default: number of CPUs).
# Queue options (--mem X, --num-threads N, --gpu N, --time T, --config F, ...) take a
# value and are accepted for compatibility with queue.pl/slurm.pl; only --num-threads
# is used (it is written in the accounting line).
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(:sys_wait_h);

my $me = "run.pl";
my $max_jobs_run = 0;
my $num_threads = 1;

while (@ARGV && $ARGV[0] =~ m/^--/) {
  my $opt = shift @ARGV;
  last if $opt eq "--";
  my $val;
  if ($opt =~ m/^(--[^=]+)=(.*)$/) { ($opt, $val) = ($1, $2); }
  else {
    die "$me: option $opt needs a value\n" unless @ARGV;
    $val = shift @ARGV;
  }
  if ($opt eq "--max-jobs-run") {
    die "$me: --max-jobs-run expects a positive integer, got '$val'\n" unless $val =~ m/^[1-9]\d*$/;
    $max_jobs_run = $val;
  } elsif ($opt eq "--num-threads") {
    $num_threads = $val;
  }  # other queue options (--mem, --gpu, --time, --config, ...): ignored on purpose.
}

my ($jobname, $jobstart, $jobend) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
  ($jobname, $jobstart, $jobend) = ($1, $2, defined $3 ? $3 : $2);
  shift @ARGV;
  die "$me: invalid job range $jobname=$jobstart:$jobend (end before start)\n" if $jobend < $jobstart;
}
die "Usage: $me [--max-jobs-run N] [JOB=1:N] log/name.JOB.log command args...\n" if @ARGV < 2;
my $logfile = shift @ARGV;
if (defined $jobname && $jobend > $jobstart && index($logfile, $jobname) < 0) {
  die "$me: $jobend-$jobstart+1 jobs would all write to one log file '$logfile' (put $jobname in its name)\n";
}

# Re-quote arguments the way Kaldi does, so the command survives one more shell parse.
my $cmd = "";
for my $x (@ARGV) {
  if ($x =~ m/^\S+$/) { $cmd .= "$x "; }
  elsif ($x =~ m/"/) { $cmd .= "'$x' "; }
  else { $cmd .= "\"$x\" "; }
}
$cmd =~ s/ $//;

if ($max_jobs_run == 0) {
  # not plain nproc: it reports OMP_NUM_THREADS, which path.sh sets to 1 for the data tools
  my $ncpu = `env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null`;
  $max_jobs_run = ($ncpu && $ncpu =~ m/^(\d+)/) ? $1 : 32;
}

sub substitute {
  my ($s, $id) = @_;
  $s =~ s/\Q$jobname\E/$id/g if defined $jobname;
  return $s;
}

# Runs in the child: header, command with output appended to the log, accounting lines.
# Each job is its own process group, so that stopping run.pl stops the job's whole tree.
sub run_one {
  my ($id) = @_;
  $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
  POSIX::setpgid(0, 0);
  my $log = substitute($logfile, $id);
  my $jobcmd = substitute($cmd, $id);
  my $dir = dirname($log);
  eval { make_path($dir) unless -d $dir; 1 } or do { print STDERR "$me: cannot create log dir $dir: $@"; POSIX::_exit(1) };
  open(my $fh, ">", $log) or do { print STDERR "$me: cannot write log $log: $!\n"; POSIX::_exit(1) };
  print $fh "# $jobcmd\n# Started at " . localtime() . "\n#\n";
  close($fh);
  my $t0 = time();
  # stdin from /dev/null: parallel jobs must not compete for the terminal.
  my $status = system("bash", "-c", "( $jobcmd ) </dev/null >>\"\$0\" 2>&1", $log);
  my $code = $status == -1 ? 127 : ($status & 127) ? 128 + ($status & 127) : $status >> 8;
  my $elapsed = time() - $t0;
  open($fh, "+<", $log) or POSIX::_exit(1);
  # Keep the accounting lines on lines of their own after output without a final newline.
  my $last = "";
  if (-s $log) { seek($fh, -1, 2); read($fh, $last, 1); }
  seek($fh, 0, 2);
  print $fh "\n" if $last ne "" && $last ne "\n";
  print $fh "# Accounting: time=$elapsed threads=$num_threads\n";
  print $fh "# Ended (code $code) at " . localtime() . ", elapsed time $elapsed seconds\n";
  close($fh);
  POSIX::_exit($code == 0 ? 0 : 1);
}

my %running;  # pid -> job id
my @failed;

# A SIGTERM, SIGINT or SIGHUP to run.pl (asr.sh forwards one when it is stopped) sends
# SIGTERM to every running job's process group, waits for them and exits 128+N: no job
# outlives run.pl. Their logs end without the accounting lines (the job did not finish).
my %signum = (HUP => 1, INT => 2, TERM => 15);
for my $sig (keys %signum) {
  $SIG{$sig} = sub {
    my @pids = keys %running;
    kill 'TERM', map { -$_ } @pids;
    1 while waitpid(-1, 0) > 0;
    print STDERR "$me: got SIG$sig: stopped " . scalar(@pids) . " running job(s)\n";
    exit 128 + $signum{$sig};
  };
}
sub reap_one {
  my $pid = waitpid(-1, 0);
  return if $pid <= 0;
  my $id = delete $running{$pid};
  push @failed, $id if defined $id && $? != 0;
}

for my $id ($jobstart .. $jobend) {
  reap_one() while scalar(keys %running) >= $max_jobs_run;
  my $pid = fork();
  die "$me: fork failed: $!\n" unless defined $pid;
  run_one($id) if $pid == 0;
  POSIX::setpgid($pid, $pid);  # also here: a signal may come before the child's own call
  $running{$pid} = $id;
}
reap_one() while %running;

if (@failed) {
  @failed = sort { $a <=> $b } @failed;
  my $n = $jobend - $jobstart + 1;
  print STDERR "$me: " . scalar(@failed) . " / $n failed, log is in " . substitute($logfile, $_) . "\n" for @failed;
  exit 1;
}
exit 0;
