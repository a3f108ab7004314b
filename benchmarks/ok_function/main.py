"""The ceiling of the HTTP layer: a function that only answers "ok", served the same way."""
import functions_framework


@functions_framework.http
def ok(request):
    return {"ok": True}, 200
