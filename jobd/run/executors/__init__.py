"""How run.sh becomes processes: here (local), under Slurm (slurm), and what both share (runsh).
Imports only procs and the shared modules."""
