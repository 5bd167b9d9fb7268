"""The inspection web service (``defectlens serve``): REST API, upload page and inspection log.

:func:`create_app` builds the FastAPI app around a Predictor and an InspectionLog;
:func:`serve` loads both from files and runs it with uvicorn. Needs the ``[serve]`` extra.
"""

from defectlens.serve.config import ALLOWED_HOSTS_ENV, API_KEY_ENV, ServeConfig, is_loopback

__all__ = ["ALLOWED_HOSTS_ENV", "API_KEY_ENV", "ServeConfig", "create_app", "is_loopback", "serve"]


def __getattr__(name: str) -> object:
    # fastapi and uvicorn load only when the app is built, so the CLI's parser stays fast
    if name == "create_app":
        from defectlens.serve.app import create_app

        return create_app
    if name == "serve":
        from defectlens.serve.server import serve

        return serve
    raise AttributeError(name)
