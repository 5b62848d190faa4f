"""The job core the routes call: the JobService facade, intake, upload fields, schedules,
retention, callbacks, Ocypod's queues. Imports run, store and the shared modules; never http."""
