"""The HTTP layer: the Bottle app, one module per protocol's routes with its part of the API
description beside it, responses, bodies, threads. Imports jobs and the shared modules only."""
