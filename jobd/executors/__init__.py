"""Executors start a job's run.sh and end it; they know processes, never HTTP or SQL."""
