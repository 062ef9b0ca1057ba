"""The console's CSS and JS, served from the app itself under /operator/static (the CSP allows scripts
from 'self' only). A fixed list of files, no path from the request reaches the file system."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter()
ROOT = Path(__file__).parent / "static" / "console"
FILES = {
    "console.css": ("console.css", "text/css; charset=utf-8"),
    "console.js": ("console.js", "text/javascript; charset=utf-8"),
    "vendor/chart.umd.min.js": ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    "vendor/LICENSE-chart.js.md": ("vendor/LICENSE-chart.js.md", "text/plain; charset=utf-8"),
}


@router.get("/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(status_code=404, detail="no such file")
    path, media_type = FILES[name]
    return FileResponse(ROOT / path, media_type=media_type, headers={"Cache-Control": "no-cache"})
