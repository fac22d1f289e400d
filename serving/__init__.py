"""The HTTP prediction service (FastAPI): ``serving.app.create_app(settings)``."""
