"""vidqueue's producer side: the Python client, the HTTP API and the command line."""
