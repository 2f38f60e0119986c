"""/docs (Swagger UI) and /redoc (ReDoc) served from files on this machine, so they work offline.

The scripts come from the pip packages `star-openapi-swagger` and `star-openapi-redoc`, which ship
Swagger UI 5 and ReDoc as plain files (they are located, never imported). Without them the pages
say so and link to /openapi.json, which always works.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

#: package -> (folder inside it, URL prefix the folder is served under)
ASSETS = {"star_openapi_swagger": ("templates/swagger", "/docs-assets/swagger"),
          "star_openapi_redoc": ("templates/redoc", "/docs-assets/redoc")}


def asset_dir(package: str) -> Path | None:
    """The asset folder of an installed package, or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / ASSETS[package][0]
    return folder if folder.is_dir() else None


def add_docs(app: FastAPI) -> None:
    """Routes /docs and /redoc (and their assets) on an app made with docs_url=None, redoc_url=None."""
    found = {}
    for package, (_, prefix) in ASSETS.items():
        folder = asset_dir(package)
        if folder is not None:
            app.mount(prefix, StaticFiles(directory=folder), name=package)
            found[package] = prefix
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        prefix = found.get("star_openapi_swagger")
        if prefix is None:
            return _missing("Swagger UI", "star-openapi-swagger")
        return get_swagger_ui_html(openapi_url="/openapi.json", title=title,
                                   swagger_js_url=f"{prefix}/js/swagger-ui-bundle.js",
                                   swagger_css_url=f"{prefix}/css/swagger-ui.css",
                                   swagger_favicon_url=f"{prefix}/images/swagger.svg")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        prefix = found.get("star_openapi_redoc")
        if prefix is None:
            return _missing("ReDoc", "star-openapi-redoc")
        # ReDoc 3 is an ES module (FastAPI's page loads ReDoc 2 as a classic script), and it sends
        # usage telemetry to redocly.com unless told not to.
        return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{prefix}/images/redoc.svg"><style>body {{ margin: 0; }}</style></head>
<body><div id="redoc"></div><script type="module">
import {{ init }} from "{prefix}/js/redoc.standalone.js";
init("/openapi.json", {{disableTelemetry: true}}, document.getElementById("redoc"));
</script></body></html>""")


def _missing(what: str, package: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{what}</title><p>{what} is not installed on this server "
                        f"(<code>pip install {package}</code>, Python 3.11+). The API's description is at "
                        f'<a href="/openapi.json">/openapi.json</a>.</p>')
