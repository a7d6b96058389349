"""The drawing page: `GET /` serves a self-contained page, `GET /static/<name>` its assets.

The page is plain HTML, CSS and JavaScript shipped inside the package (no build step, no
external assets), and talks to the gateway only through the public API: `POST v1/predict`
and `GET v1/models`.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The only files served: an allow-list, so no request path can reach anything else.
ASSETS = {
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# Everything the page loads comes from this origin; the policy makes a stray external
# asset fail loudly in the browser (and in the browser test) instead of silently working.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# Revalidate on every load (FileResponse sends ETag and Last-Modified) so an upgraded
# gateway never runs with a cached page from the previous version.
COMMON_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def drawing_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
    )


@router.get("/static/{name}")
def static_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"No static file named {name!r}.")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=COMMON_HEADERS)
