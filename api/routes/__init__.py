"""The API's routes, one ``APIRouter`` per resource; ``api.app`` includes them (``ROUTERS``, in OpenAPI order).

Shared parameters and the role dependencies live in ``api.routes.deps``; the warehouse reads behind the routes
in ``api.queries`` and the console's read models (``api.charts``, ``api.precheck``, ``api.pipeline``).
"""
