"""The operator console: static HTML, ES modules and CSS under ``static/``, served at ``/console``."""
