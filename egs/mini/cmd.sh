# How parallel jobs run. run.pl runs them on this machine; for a SLURM cluster use
#   export train_cmd="slurm.pl --mem 16G"  decode_cmd="slurm.pl --mem 8G"  cuda_cmd="slurm.pl --gpu 1"
# (slurm.pl has run.pl's interface: $cmd JOB=1:N log/x.JOB.log command args...).
export train_cmd="run.pl"
export decode_cmd="run.pl"
export cuda_cmd="run.pl"
