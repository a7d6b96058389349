"""HTTP: routes, request and response schemas, uploads, the drawing page."""
