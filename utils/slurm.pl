#!/usr/bin/env perl
# Run a command, or an array of commands, as a Slurm job array (same interface as run.pl).
#
# Usage: slurm.pl [options] [JOB=1:N] log/name.JOB.log command args...
#   e.g. slurm.pl --gpu 1 --mem 8G JOB=1:4 exp/log/decode.JOB.log python -m x --part JOB
#
# Writes one bash script per job and a dispatcher under <logdir>/q/, submits them as one
# array with "sbatch --wait" (exported environment, current directory), and when sbatch
# returns reads each job's exit code from q/<name>.<id>.code. Logs look exactly like
# run.pl's; a job that never wrote its code (killed, timed out, never started) counts as
# failed (after waiting up to $SLURM_PL_SYNC_WAIT seconds, default 30, for slow shared
# file systems) and its Slurm output q/<name>.<id>.out is named. Interrupting slurm.pl
# cancels the array with scancel.
# Options (a value each): --max-jobs-run N (-> --array=...%N), --gpu N (-> --gres=gpu:N),
# --mem X (-> --mem=X, per job), --num-threads N (-> --cpus-per-task=N), --time T,
# --partition P, --sbatch-opts "raw options", --config F (ignored, for cmd.sh files).
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);

my $me = "slurm.pl";
my ($max_jobs_run, $num_threads) = (0, 1);
my @sbatch_opts;

while (@ARGV && $ARGV[0] =~ m/^--/) {
  my $opt = shift @ARGV;
  last if $opt eq "--";
  my $val;
  if ($opt =~ m/^(--[^=]+)=(.*)$/) { ($opt, $val) = ($1, $2); }
  else { die "$me: option $opt needs a value\n" unless @ARGV; $val = shift @ARGV; }
  if ($opt eq "--max-jobs-run") {
    die "$me: --max-jobs-run expects a positive integer, got '$val'\n" unless $val =~ m/^[1-9]\d*$/;
    $max_jobs_run = $val;
  } elsif ($opt eq "--gpu") {
    die "$me: --gpu expects an integer, got '$val'\n" unless $val =~ m/^\d+$/;
    push @sbatch_opts, "--gres=gpu:$val" if $val > 0;
  } elsif ($opt eq "--mem") { push @sbatch_opts, "--mem=$val"; }
  elsif ($opt eq "--num-threads") {
    die "$me: --num-threads expects a positive integer, got '$val'\n" unless $val =~ m/^[1-9]\d*$/;
    $num_threads = $val; push @sbatch_opts, "--cpus-per-task=$val";
  } elsif ($opt eq "--time") { push @sbatch_opts, "--time=$val"; }
  elsif ($opt eq "--partition") { push @sbatch_opts, "--partition=$val"; }
  elsif ($opt eq "--sbatch-opts") { push @sbatch_opts, split(' ', $val); }
  elsif ($opt eq "--config") { }
  else { die "$me: unknown option $opt (known: --max-jobs-run --gpu --mem --num-threads --time --partition --sbatch-opts)\n"; }
}

my ($jobname, $jobstart, $jobend) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
  ($jobname, $jobstart, $jobend) = ($1, $2, defined $3 ? $3 : $2);
  shift @ARGV;
  die "$me: invalid job range $jobname=$jobstart:$jobend (end before start)\n" if $jobend < $jobstart;
}
die "Usage: $me [options] [JOB=1:N] log/name.JOB.log command args...\n" if @ARGV < 2;
my $logfile = shift @ARGV;
if (defined $jobname && $jobend > $jobstart && index($logfile, $jobname) < 0) {
  die "$me: jobs $jobstart..$jobend would all write to one log file '$logfile' (put $jobname in its name)\n";
}

my $cmd = "";
for my $x (@ARGV) {
  if ($x =~ m/^\S+$/) { $cmd .= "$x "; }
  elsif ($x =~ m/"/) { $cmd .= "'$x' "; }
  else { $cmd .= "\"$x\" "; }
}
$cmd =~ s/ $//;

sub substitute { my ($s, $id) = @_; $s =~ s/\Q$jobname\E/$id/g if defined $jobname; return $s; }
sub shq { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'"; }
sub write_file {
  my ($path, $text) = @_;
  open(my $fh, ">", "$path.tmp") or die "$me: cannot write $path: $!\n";
  print $fh $text; close($fh) or die "$me: cannot write $path: $!\n";
  rename("$path.tmp", $path) or die "$me: cannot rename $path.tmp: $!\n";
  chmod(0755, $path);
}

my $cwd = getcwd();
my $logdir = dirname($logfile);
my $qdir = "$logdir/q";
make_path($qdir) unless -d $qdir;
(my $base = basename($logfile)) =~ s/\.log$//;
$base =~ s/\Q$jobname\E//g if defined $jobname;
$base =~ s/\.+/./g; $base =~ s/^\.|\.$//g;
$base = "job" if $base eq "";

for my $id ($jobstart .. $jobend) {
  my $log = substitute($logfile, $id);
  my $jobcmd = substitute($cmd, $id);
  my $code = "$qdir/$base.$id.code";
  unlink($code);
  my $qlog = shq($log);
  write_file("$qdir/$base.$id.sh", <<"SH");
#!/usr/bin/env bash
# Job $id of: $me $logfile ... (written by $me; run through sbatch)
cd ${\ shq($cwd)} || exit 1
mkdir -p "\$(dirname $qlog)" || exit 1
printf '# %s\\n# Started at %s\\n#\\n' ${\ shq($jobcmd)} "\$(date)" > $qlog
t0=\$(date +%s)
( $jobcmd ) </dev/null >>$qlog 2>&1
ret=\$?
t1=\$(date +%s)
[ -n "\$(tail -c 1 $qlog)" ] && echo >>$qlog
echo "# Accounting: time=\$((t1 - t0)) threads=$num_threads" >>$qlog
echo "# Ended (code \$ret) at \$(date), elapsed time \$((t1 - t0)) seconds" >>$qlog
echo \$ret > ${\ shq($code)}
exit \$ret
SH
}
my $dispatcher = "$qdir/$base.sh";
my $qabs = $qdir =~ m{^/} ? $qdir : "$cwd/$qdir";
write_file($dispatcher, "#!/usr/bin/env bash\nexec bash " . shq("$qabs/$base.") . "\"\$SLURM_ARRAY_TASK_ID\"" . ".sh\n");

my $array = "$jobstart-$jobend" . ($max_jobs_run ? "%$max_jobs_run" : "");
my @sbatch = ("sbatch", "--parsable", "--wait", "--export=ALL", "--chdir=$cwd",
              "--job-name=$base", "--array=$array", "--output=$qdir/$base.%a.out",
              @sbatch_opts, $dispatcher);
write_file("$qdir/$base.submit", join(" ", map { shq($_) } @sbatch) . "\n");

# sbatch --parsable prints the job id at submission, then waits for the array to end.
my $slurm_id;
$SIG{INT} = $SIG{TERM} = sub {
  system("scancel", $slurm_id) if defined $slurm_id;
  die "$me: interrupted; cancelled Slurm job " . ($slurm_id // "(not yet submitted)") . "\n";
};
open(my $sb, "-|", @sbatch) or die "$me: cannot run sbatch: $!\n";
while (my $line = <$sb>) { $slurm_id = $1 if !defined $slurm_id && $line =~ m/^(\d+)/; }
close($sb);
my $sbatch_status = $?;
die "$me: sbatch failed (status " . ($sbatch_status >> 8) . "); command in $qdir/$base.submit\n"
  if !defined $slurm_id && $sbatch_status != 0;

# On a shared file system a job's code file can show up here a little after sbatch returns.
my $sync_wait = $ENV{SLURM_PL_SYNC_WAIT} // 30;
for (my $waited = 0; $waited < $sync_wait; $waited++) {
  last unless grep { !-e "$qdir/$base.$_.code" } ($jobstart .. $jobend);
  sleep(1);
}

my @failed;
for my $id ($jobstart .. $jobend) {
  my $code_file = "$qdir/$base.$id.code";
  my $log = substitute($logfile, $id);
  if (open(my $fh, "<", $code_file)) {
    my $c = <$fh>; close($fh);
    chomp($c) if defined $c;
    push @failed, "$log" if !defined $c || $c ne "0";
  } else {
    push @failed, "$log (job never finished; Slurm output in $qdir/$base.$id.out)";
  }
}
if (@failed) {
  my $n = $jobend - $jobstart + 1;
  print STDERR "$me: " . scalar(@failed) . " / $n failed, log is in $_\n" for @failed;
  exit 1;
}
exit 0;
