"""`jobd worker`: runs the jobs of a central jobd's pull service on this host, over outbound
HTTP only (the queue routes and /api/pull), with serve's own executor and sandbox. Imports run,
store's layout, formats and the shared modules; never jobs or http, which are the central's."""
