"""The service's OpenAPI document and docs pages, with the request models built from the data schema.

The request bodies are read and validated by `EventParser`, not by FastAPI (its checks are the batch
validator's own, and the body limits apply while reading), so the routes declare their bodies here for the
documentation and generated clients only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"


def json_body(schema: dict[str, Any] | type[BaseModel], many: bool = False) -> dict[str, Any]:
    """A route's `openapi_extra` declaring a required JSON body: the model, or (many) it or an array of it."""
    if isinstance(schema, type):
        schema = {"$ref": REF_TEMPLATE.format(model=schema.__name__)}
    if many:
        schema = {"anyOf": [schema, {"type": "array", "items": schema}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_docs(app: FastAPI, models: list[type[BaseModel]], authorize: Callable[[Request], Awaitable[None]]) -> None:
    """`/openapi.json` (with `models` as components), `/docs` and `/redoc`, all behind `authorize`.

    Args:
        app: built with `docs_url=None, redoc_url=None, openapi_url=None` (these routes replace them).
        models: the request models the routes' `json_body` refer to.
        authorize: the API's bearer-token dependency (a no-op without a token).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schemas[model.__name__] = model.model_json_schema(ref_template=REF_TEMPLATE)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    guard = [Depends(authorize)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
