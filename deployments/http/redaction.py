"""Keeps request text out of the logs: exception messages may quote it, so they are withheld.

Off unless ``security.log_request_text`` or DEBUG logging: a logged traceback keeps its frames
(file, line, code) and shows each exception's message as its length only.
"""

from __future__ import annotations

import logging
import traceback

# Whether log records may quote request text; the ingress sets it from security.log_request_text.
_log_request_text = False


def text_loggable(logger_name: str = "hayaku") -> bool:
    """May a log record of ``logger_name`` quote request text? Only with log_request_text or DEBUG logging."""
    return _log_request_text or logging.getLogger(logger_name).isEnabledFor(logging.DEBUG)


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and its causes) with each exception's message replaced by its length.

    Exception messages may quote the request's text; the frames (file, line, code) never do.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    parts = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(e.__traceback__))
        try:
            size = len(str(e))
        except Exception:
            size = -1
        parts.append(
            f"{type(e).__module__}.{type(e).__qualname__}: <message withheld: {size} characters; "
            "security.log_request_text or DEBUG logging shows it>\n"
        )
    return "".join(parts).rstrip("\n")


class RedactRequestText(logging.Filter):
    """Withholds exception messages (which may quote request text) from a logger's records.

    Formatters (logging's and Ray's) print ``record.exc_text`` when it is set, so setting it to
    the redacted traceback is enough; the record's message itself never quotes request text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not text_loggable(record.name):
            record.exc_text = redacted_traceback(record.exc_info[1])
        return True


#: loggers whose records may carry exceptions raised while serving a request
REDACTED_LOGGERS = ("hayaku", "hayaku.http", "hayaku.ingress", "hayaku.translator", "hayaku.speaker", "ray.serve")


def install_log_redaction(log_request_text: bool | None = None) -> None:
    """Adds the redaction filter to the serving loggers (idempotent); sets log_request_text if given."""
    global _log_request_text
    if log_request_text is not None:
        _log_request_text = bool(log_request_text)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactRequestText) for f in logger.filters):
            logger.addFilter(RedactRequestText())
