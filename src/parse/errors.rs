//! The HTTP status behind an error that was recorded without one.
//!
//! Instrumentations mark a failed call with the exception's type (`error.type =
//! RateLimitError`, an `exception` event) and its message (`Error code: 429 - …`), not
//! with an HTTP status attribute. Both say which status the provider answered: the
//! message's code first, then the type's name as the OpenAI, Anthropic and LiteLLM
//! clients spell it (`openai.RateLimitError`, `rate_limit_error`). Timeouts and
//! connection failures got no response: status 0.

/// The status an error type or message names, if any.
pub fn status_of(kind: Option<&str>, message: Option<&str>) -> Option<u16> {
    message.and_then(code_in_message).or_else(|| kind.and_then(status_of_kind)).or_else(|| {
        // Some instrumentations put the type's name only in the message ("RateLimitError: …").
        message.and_then(|m| m.split([':', ' ', '(']).next()).and_then(status_of_kind)
    })
}

/// `Error code: 429 - {…}` (OpenAI and Anthropic clients), `status code 503`,
/// `status_code=401`, `HTTP 500`, `… does not indicate success: 429 (Too Many Requests)` (.NET).
fn code_in_message(m: &str) -> Option<u16> {
    const MARKERS: [&str; 6] =
        ["Error code: ", "error code: ", "status code ", "status_code=", "HTTP ", "does not indicate success: "];
    MARKERS.iter().find_map(|marker| {
        let at = m.find(marker)? + marker.len();
        let digits: &str = &m[at..m[at..].find(|c: char| !c.is_ascii_digit()).map_or(m.len(), |e| at + e)];
        digits.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
    })
}

/// Exception class names and API error types, without their module
/// (`openai.RateLimitError`, `litellm.exceptions.RateLimitError`).
fn status_of_kind(kind: &str) -> Option<u16> {
    let name = kind.rsplit(['.', ':']).next().unwrap_or(kind).trim();
    const KINDS: [(&str, u16); 33] = [
        ("RateLimitError", 429),
        ("rate_limit_error", 429),
        ("rate_limit_exceeded", 429),
        ("ThrottlingException", 429),
        ("TooManyRequests", 429),
        ("AuthenticationError", 401),
        ("authentication_error", 401),
        ("invalid_api_key", 401),
        ("PermissionDeniedError", 403),
        ("permission_error", 403),
        ("BadRequestError", 400),
        ("invalid_request_error", 400),
        ("ContextWindowExceededError", 400),
        ("ContentPolicyViolationError", 400),
        ("NotFoundError", 404),
        ("not_found_error", 404),
        ("ConflictError", 409),
        ("request_too_large", 413),
        ("UnprocessableEntityError", 422),
        ("InternalServerError", 500),
        ("api_error", 500),
        ("server_error", 500),
        ("BadGatewayError", 502),
        ("ServiceUnavailableError", 503),
        ("OverloadedError", 529),
        ("overloaded_error", 529),
        ("APITimeoutError", 0),
        ("Timeout", 0),
        ("TimeoutError", 0),
        ("ReadTimeout", 0),
        ("APIConnectionError", 0),
        ("ConnectError", 0),
        ("ConnectionError", 0),
    ];
    KINDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|&(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_messages_come_first() {
        assert_eq!(status_of(Some("RateLimitError"), Some("Error code: 429 - {'error': {}}")), Some(429));
        assert_eq!(status_of(Some("APIStatusError"), Some("Error code: 529 - overloaded")), Some(529));
        assert_eq!(status_of(None, Some("upstream said status code 503")), Some(503));
        assert_eq!(status_of(None, Some("Error code: 99")), None, "not an HTTP status");
    }

    #[test]
    fn type_names_as_clients_spell_them() {
        for (kind, want) in [
            ("openai.RateLimitError", 429),
            ("anthropic.AuthenticationError", 401),
            ("BadRequestError", 400),
            ("litellm.exceptions.NotFoundError", 404),
            ("InternalServerError", 500),
            ("openai.APITimeoutError", 0),
            ("httpx.ConnectError", 0),
            ("overloaded_error", 529),
            ("rate_limit_exceeded", 429),
        ] {
            assert_eq!(status_of(Some(kind), None), Some(want), "{kind}");
        }
        assert_eq!(status_of(Some("ValueError"), Some("bad input")), None);
        assert_eq!(status_of(None, Some("RateLimitError: slow down")), Some(429));
    }
}
