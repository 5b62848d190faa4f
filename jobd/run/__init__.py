"""A job's run: the runners that claim jobs (dispatch picks which), the lifecycle that records
every change of state, the executors, process groups and the sandbox. Imports store and the
shared modules."""
