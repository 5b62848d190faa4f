"""The client: the Python API (`JobdClient`), the command-line commands and what a terminal
shows. It talks to a daemon over HTTP only: imports formats, errors and models, no other layer."""

from jobd.client.api import ClientError, JobdClient, NotFinished

__all__ = ["ClientError", "JobdClient", "NotFinished"]
