"""What a run.sh may reach and use: job users, Landlock, cgroups and rlimits, put together by
confine. Imports only the shared modules."""
