"""HTTP API (FastAPI): ``POST /rag`` (JSON or Server-Sent Events), ``/health``, ``/ready``, the web page."""
