"""The two providers' wire formats: error bodies, submit responses and task bodies.

Field order follows the documents' examples, so a rendered body with the example's values is
byte-for-byte the example (``json.dumps(body, indent=2, ensure_ascii=False)``).
"""

from __future__ import annotations

from typing import Any

import attrs

from ._config import APIMART, Language, UrlForm

JSON = dict[str, Any]

# Causes of a failed (or cancelled) task -> (APIMart message, EvoLink code, EvoLink message).
# APIMart reports every failure as code "task_failed"; the message names the cause with exactly
# one of the keywords "quota", "moderation", "timeout" ("cancel" for cancelled tasks).
FAILURES: dict[str, tuple[str, str, str]] = {
    "quota": (
        "upstream quota temporarily exhausted, please retry later",
        "upstream_quota_exhausted",
        "Upstream quota temporarily exhausted, please retry later",
    ),
    "moderation": (
        "content moderation rejected the prompt or reference media",
        "content_moderation",
        "Content moderation rejected the prompt or reference media",
    ),
    "timeout": (
        "upstream timeout while generating the video",
        "upstream_timeout",
        "Upstream timeout while generating the video",
    ),
    "cancel": ("task cancelled", "task_cancelled", "Task was cancelled"),
}
# The APIMart failure messages of a task-status request with a ``language`` query (without one,
# the English message above). zh names the causes as the Omni-Flash-Ext document does.
APIMART_FAILURE_MESSAGES: dict[Language, dict[str, str]] = {
    "en": {cause: messages[0] for cause, messages in FAILURES.items()},
    "zh": {
        "quota": "上游配额暂时耗尽，请稍后重试",
        "moderation": "内容审核未通过",
        "timeout": "上游超时",
        "cancel": "任务已取消",
    },
    "ja": {
        "quota": "上流のクォータが一時的に枯渇しています。しばらくしてから再試行してください",
        "moderation": "コンテンツ審査に通過しませんでした",
        "timeout": "上流でタイムアウトしました",
        "cancel": "タスクはキャンセルされました",
    },
    "ko": {
        "quota": "업스트림 할당량이 일시적으로 소진되었습니다. 잠시 후 다시 시도하세요",
        "moderation": "콘텐츠 검토를 통과하지 못했습니다",
        "timeout": "업스트림 시간 초과",
        "cancel": "작업이 취소되었습니다",
    },
}
APIMART_FAILED_CODE = "task_failed"
APIMART_CANCELLED_CODE = "task_cancelled"


@attrs.define
class ApiError(Exception):
    """A documented error response: HTTP status, provider ``type`` and, for EvoLink, ``code``.

    ``kind`` names the error independently of the provider ("invalid_request", "unauthorized",
    "insufficient_quota", "model_access_denied", "rate_limited", "internal", "not_found");
    ``apimart_type`` overrides APIMart's ``type`` (e.g. ``invalid_duration``); ``detail`` is
    appended to the message.
    """

    kind: str
    detail: str | None = None
    apimart_type: str | None = None


# kind -> (HTTP status, APIMart type, EvoLink code, EvoLink type, EvoLink message)
_KINDS: dict[str, tuple[int, str, str, str, str]] = {
    "invalid_request": (
        400,
        "invalid_request_error",
        "invalid_request",
        "invalid_request_error",
        "Invalid request parameters",
    ),
    "unauthorized": (
        401,
        "authentication_error",
        "unauthorized",
        "authentication_error",
        "Invalid or expired token",
    ),
    "insufficient_quota": (
        402,
        "payment_required",
        "insufficient_quota",
        "insufficient_quota",
        "Insufficient quota. Please top up your account.",
    ),
    "model_access_denied": (
        403,
        "permission_error",
        "model_access_denied",
        "invalid_request_error",
        "Token does not have access to model: {model}",
    ),
    "not_found": (
        404,
        "not_found_error",
        "task_not_found",
        "invalid_request_error",
        "Task not found",
    ),
    "rate_limited": (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        "rate_limit_error",
        "Too many requests, please try again later",
    ),
    "internal": (500, "server_error", "internal_error", "api_error", "Internal server error"),
}

# APIMart's localized messages per HTTP status (zh and ja verbatim from the documents).
_APIMART_MESSAGES: dict[int, dict[Language, str]] = {
    400: {
        "zh": "请求参数无效",
        "ja": "リクエストパラメータが無効です",
        "en": "Invalid request parameters",
        "ko": "요청 매개변수가 유효하지 않습니다",
    },
    401: {
        "zh": "身份验证失败，请检查您的API密钥",
        "ja": "認証に失敗しました。API キーを確認してください",
        "en": "Authentication failed, please check your API key",
        "ko": "인증에 실패했습니다. API 키를 확인하세요",
    },
    402: {
        "zh": "账户余额不足，请充值后再试",
        "ja": "アカウント残高が不足しています。チャージしてから再試行してください",
        "en": "Insufficient balance, please top up and try again",
        "ko": "계정 잔액이 부족합니다. 충전 후 다시 시도하세요",
    },
    403: {
        "zh": "无权访问该模型",
        "ja": "このモデルへのアクセス権がありません",
        "en": "No access to this model",
        "ko": "이 모델에 대한 액세스 권한이 없습니다",
    },
    404: {
        "zh": "任务不存在",
        "ja": "タスクが見つかりません",
        "en": "Task not found",
        "ko": "작업을 찾을 수 없습니다",
    },
    429: {
        "zh": "请求过于频繁，请稍后再试",
        "ja": "リクエストが多すぎます。しばらくしてから再試行してください",
        "en": "Too many requests, please try again later",
        "ko": "요청이 너무 많습니다. 잠시 후 다시 시도하세요",
    },
    500: {
        "zh": "服务器内部错误",
        "ja": "サーバー内部エラー",
        "en": "Internal server error",
        "ko": "서버 내부 오류",
    },
}


def error_status(error: ApiError) -> int:
    """The HTTP status of an error."""
    return _KINDS[error.kind][0]


def error_body(provider: str, error: ApiError, *, language: Language, model: str = "") -> JSON:
    """The provider's error body for ``error``."""
    status, apimart_type, code, evolink_type, evolink_message = _KINDS[error.kind]
    if provider == APIMART:
        message = _APIMART_MESSAGES[status][language]
        if error.detail:
            message = f"{message}: {error.detail}"
        return {
            "error": {
                "code": status,
                "message": message,
                "type": error.apimart_type or apimart_type,
            }
        }
    message = evolink_message.format(model=model)
    if error.detail:
        message = f"{message}: {error.detail}"
    return {"error": {"code": code, "message": message, "type": evolink_type}}


@attrs.frozen
class TaskView:
    """What a task looks like at one instant, in provider-neutral terms."""

    id: str
    model: str
    status: str
    progress: int
    created: int
    estimated_time: int
    completed: int | None = None
    actual_time: int | None = None
    cost: float = 0
    credits: float = 0
    urls: tuple[str, ...] = ()
    expires_at: int | None = None
    cause: str | None = None
    video_duration: int | None = None
    credits_reserved: float = 0.0


def apimart_submit(task_id: str) -> JSON:
    """APIMart's submit response: ``data`` is a one-element list."""
    return {"code": 200, "data": [{"status": "submitted", "task_id": task_id}]}


def apimart_task(view: TaskView, url_form: UrlForm, language: Language | None = None) -> JSON:
    """APIMart's task-status body (wrapped in ``{"code": 200, "data": ...}``); ``language``,
    from the request's query, sets the language of a failure message."""
    data: JSON = {
        "id": view.id,
        "status": view.status,
        "progress": view.progress,
        "created": view.created,
    }
    if view.completed is not None:
        data["completed"] = view.completed
        data["actual_time"] = view.actual_time
    data["estimated_time"] = view.estimated_time
    data["cost"] = view.cost
    data["credits_cost"] = view.credits
    if view.status == "completed":
        data["result"] = {
            "videos": [
                {"url": [url] if url_form == "list" else url, "expires_at": view.expires_at}
                for url in view.urls
            ]
        }
    elif view.cause is not None:
        code = APIMART_CANCELLED_CODE if view.status == "cancelled" else APIMART_FAILED_CODE
        message = (
            FAILURES[view.cause][0]
            if language is None
            else APIMART_FAILURE_MESSAGES[language][view.cause]
        )
        data["error"] = {"message": message, "code": code}
    return {"code": 200, "data": data}


def _usage(view: TaskView) -> JSON:
    return {
        "billing_rule": "per_second",
        "credits_reserved": view.credits_reserved,
        "user_group": "default",
    }


def evolink_submit(view: TaskView) -> JSON:
    """EvoLink's submit response (a bare task object, always ``pending``)."""
    return {
        "created": view.created,
        "id": view.id,
        "model": view.model,
        "object": "video.generation.task",
        "progress": 0,
        "status": "pending",
        "task_info": {"can_cancel": False, "estimated_time": view.estimated_time},
        "type": "video",
        "usage": _usage(view),
    }


def evolink_task(view: TaskView) -> JSON:
    """EvoLink's task-status body, also the callback body."""
    task_info: JSON = {"can_cancel": False, "estimated_time": view.estimated_time}
    if view.status == "completed":
        task_info["video_duration"] = view.video_duration
    body: JSON = {
        "id": view.id,
        "object": "video.generation.task",
        "created": view.created,
        "model": view.model,
        "status": view.status,
        "progress": view.progress,
        "type": "video",
        "task_info": task_info,
    }
    if view.status == "completed":
        body["results"] = list(view.urls)
    elif view.cause is not None:
        _, code, message = FAILURES[view.cause]
        body["error"] = {"code": code, "message": message}
    body["usage"] = _usage(view)
    return body
