import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shequn.settings")
application = get_wsgi_application()

# Build the URLconf (and with it every API schema) now, in each worker as it starts, rather than in
# its first requests: django-ninja creates ~400 pydantic models on import, a few seconds on a busy
# core, which the first buyers of a flash sale would otherwise wait for.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - the import is the point
