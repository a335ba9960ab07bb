"""The HTTP edge every domain shares: errors and their problem+json rendering (``errors``, ``messages``), bodies
decoded once and strictly (``bodies``), parameter checks (``parameters``), the OpenAPI document derived from the
routes (``openapi``), ``OPTIONS`` answers (``options``), request context, the outermost middleware, rate limits and
the dependencies handlers ask for by name.
"""
