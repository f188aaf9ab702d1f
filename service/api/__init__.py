"""The HTTP layer: the app factory (``app.py``), its components and providers, the error map,
auth, and one module per route group. Handlers stay thin: the work is in ``service.answer``,
``service.documents`` and the layers below."""
