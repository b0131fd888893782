"""A monkey-patched eventlet.wsgi server with the auth_token filter in front (the shape of
an eventlet-based OpenStack API). Usage: python eventlet_keystone_server.py '<json options>';
prints the port, then serves."""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from eventlet import wsgi  # noqa: E402
from tokenward.auth_token import filter_factory  # noqa: E402
from wsgi_apps import echo_app  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
app = filter_factory({}, **json.loads(sys.argv[1]))(echo_app)
sock = eventlet.listen(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
wsgi.server(sock, app, log_output=False, max_size=200)
