"""How run.sh becomes processes: here (local), under Slurm (slurm), and what both share (runsh).
Imports procs, the sandbox and the shared modules."""
