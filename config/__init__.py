"""vidqueue's wiring: settings from the environment, the providers file, the Celery app."""
