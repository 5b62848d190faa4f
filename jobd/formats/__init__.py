"""What crosses the wire and the disk, checked: zips in and out (and their base64), JSON bodies
scanned as a stream, Ocypod's durations. Used by the daemon and the client alike; imports only
errors."""
