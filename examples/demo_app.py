"""The protected app of the demo: answers with the identity the filter established."""

import json
from typing import Any, Callable


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    identity = {
        "user_id": environ.get("HTTP_X_USER_ID"),
        "project_id": environ.get("HTTP_X_PROJECT_ID"),
        "roles": environ.get("HTTP_X_ROLES"),
        "system_scope": environ.get("HTTP_OPENSTACK_SYSTEM_SCOPE"),
        "token_client_id": (environ.get("external.token_info") or {}).get("origin_token_metadata", {}).get("client_id"),
    }
    body = json.dumps(identity).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    return app
