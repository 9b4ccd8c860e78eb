"""`GET /docs`: the OpenAPI document rendered by Swagger UI, served whole by the router.

Nothing comes from a CDN, so the page works on a machine without internet: the Swagger
UI assets are the ones the `swagger-ui-py` package ships (Swagger UI 5, which reads
OpenAPI 3.1), served from `/docs/static/`, and the page's own start-up script is a
same-origin file too (no inline script, so a strict Content-Security-Policy holds), and
Swagger UI's online validator badge is off (it would send the document's URL away).
"""

from __future__ import annotations

from importlib.resources import files

import trio

STATIC_PREFIX = "/docs/static/"

# The files the page uses, and their types; nothing else of the package is served.
ASSETS: dict[str, str] = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_SCRIPT = "aura-docs.js"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Aura Router API</title>
  <link rel="stylesheet" href="{STATIC_PREFIX}swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC_PREFIX}swagger-ui-bundle.js"></script>
  <script src="{STATIC_PREFIX}{INIT_SCRIPT}"></script>
</body>
</html>
"""

INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""

# Content-Security-Policy for the page: everything from this origin, nothing else.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'")


class DocsAssets:
    """The page's static files, read from the package once each (a few MB at most)."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {INIT_SCRIPT: INIT_JS.encode()}

    @staticmethod
    def content_type(name: str) -> str | None:
        if name == INIT_SCRIPT:
            return "text/javascript; charset=utf-8"
        return ASSETS.get(name)

    async def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when `name` is not one of the page's assets."""
        if self.content_type(name) is None:
            return None
        if name not in self._cache:
            path = files("swagger_ui").joinpath("static", name)
            self._cache[name] = await trio.to_thread.run_sync(path.read_bytes)
        return self._cache[name]
