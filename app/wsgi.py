"""The only module gunicorn imports: ``gunicorn -c gunicorn.conf.py app.wsgi:app``.

Imported in each worker after fork (``preload_app = False``), so every
worker builds its own pools and caches.
"""

from app.factory import create_gateway

gateway = create_gateway()
app = gateway.app
