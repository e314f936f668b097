"""WSGI entry point for production servers.

    PUMPGUARD_DATA=/srv/pumpguard DATABASE_URL=postgresql+psycopg://... \
        gunicorn --workers 2 --bind 127.0.0.1:8080 'update_server.wsgi:app'
"""

from update_server.app import create_app

app = create_app()
