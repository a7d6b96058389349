"""One router per file; `serving.app` includes them all."""
