"""The admin HTTP API, its OpenAPI document, operations, reload, metrics and the dashboard."""
