"""The HTTP edge every domain shares: errors and their problem+json rendering, strict bodies, request context,
the outermost middleware, rate limits and the dependencies handlers ask for by name.
"""
