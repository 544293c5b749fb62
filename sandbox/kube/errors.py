"""Canonical `metav1.Status` failures, shaped as the API server's `k8s.io/apimachinery/pkg/api/errors`."""

from __future__ import annotations

from typing import Any

from sandbox.kube.types import ResourceType


class ApiError(Exception):
    """A failure the server answers with a `Status` body and its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
        }
        if self.reason:  # StatusReasonUnknown is "" and omitted, as for errors the registry did not classify
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rtype: ResourceType | None, name: str, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rtype is not None and rtype.group:
        details["group"] = rtype.group
    if kind is not None:
        details["kind"] = kind
    elif rtype is not None:
        details["kind"] = rtype.plural
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.group_resource} "{name}" not found', _details(rtype, name))


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})


def no_such_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rtype.group_resource} "{name}" already exists', _details(rtype, name))


def conflict(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(rtype, name),
    )


class GoLiteral(str):
    """A value already printed as Go's `%#v` prints it (`map[string]string{...}`): shown unquoted."""


class FieldError:
    """One `field.Error`: its type decides the cause reason and the message wording."""

    REASONS = {
        "Invalid value": "FieldValueInvalid", "Required value": "FieldValueRequired",
        "Unsupported value": "FieldValueNotSupported", "Forbidden": "FieldValueForbidden",
        "Duplicate value": "FieldValueDuplicate", "Too long": "FieldValueTooLong",
    }

    def __init__(self, kind: str, path: str, detail: str, value: Any = None, show_value: bool = True) -> None:
        self.kind = kind
        self.path = path
        self.detail = detail
        self.value = value
        self.show_value = show_value

    def message(self) -> str:
        if self.kind in ("Invalid value", "Unsupported value", "Duplicate value") and self.show_value:
            rendered = str(self.value) if isinstance(self.value, GoLiteral) else f'"{self.value}"' \
                if isinstance(self.value, str) else _go_value(self.value)
            body = f"{self.kind}: {rendered}"
            return f"{body}: {self.detail}" if self.detail else body
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def cause(self) -> dict[str, Any]:
        return {"reason": self.REASONS.get(self.kind, "FieldValueInvalid"), "message": self.message(),
                "field": self.path}


def _go_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def invalid(rtype: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    parts = [f"{e.path}: {e.message()}" for e in errors]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"name": name, **({"group": rtype.group} if rtype.group else {}), "kind": rtype.kind,
               "causes": [e.cause() for e in errors]}
    return ApiError(422, "Invalid", f'{rtype.group_kind} "{name}" is invalid: {summary}', details)


def invalid_options(kind: str, errors: list[FieldError]) -> ApiError:
    """A 422 for bad request options (`DeleteOptions`, `CreateOptions`, …): the handlers name the
    `meta.k8s.io` kind and an empty object name (`DeleteOptions.meta.k8s.io "" is invalid: …`)."""
    parts = [f"{e.path}: {e.message()}" for e in errors]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"group": "meta.k8s.io", "kind": kind, "causes": [e.cause() for e in errors]}
    return ApiError(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {summary}', details)


def precondition_failed(rtype: ResourceType, name: str, field_name: str, wanted: str, actual: str) -> ApiError:
    """A delete precondition that does not hold, worded as `rest.BeforeDelete` words it: the
    qualified *kind* (not the resource) names the object."""
    why = ("The object might have been deleted and then recreated" if field_name == "UID"
           else "The object might have been modified")
    details = {"name": name, **({"group": rtype.group} if rtype.group else {}), "kind": rtype.kind}
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.group_kind} "{name}": the {field_name} '
                    f"in the precondition ({wanted}) does not match the {field_name} in record ({actual}). {why}",
                    details)


def precondition_failed_storage(rtype: ResourceType, name: str, field_name: str, wanted: str, actual: str) -> ApiError:
    """The older storage-layer wording that the namespace and CRD registries still use for their own
    delete preconditions."""
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": '
                    f"Precondition failed: {field_name} in precondition: {wanted}, {field_name} in object meta: "
                    f"{actual}", _details(rtype, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        f'the body of the request was in an unknown format - accepted media types include: {", ".join(accepted)}',
        {},
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(403, "Forbidden", f'{rtype.group_resource} "{name}" is forbidden: {why}', _details(rtype, name))


def injected(code: int, retry_after: float | None = None) -> ApiError:
    """A failure injected through the control endpoint, shaped like the server's own."""
    headers: dict[str, str] = {}
    if code == 429:
        seconds = max(1, round(retry_after)) if retry_after is not None else 1
        headers["Retry-After"] = str(seconds)
        return ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                        {"retryAfterSeconds": seconds}, headers)
    if code == 503:
        return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request", {})
    if code == 504:
        return ApiError(504, "Timeout", "the server was unable to return a response in the time allotted", {})
    if code == 403:
        return ApiError(403, "Forbidden", "forbidden: the sandbox was told to refuse this request", {})
    return ApiError(code, "InternalError", "Internal error occurred: injected by the sandbox fault table",
                    {"causes": [{"message": "injected by the sandbox fault table"}]})
