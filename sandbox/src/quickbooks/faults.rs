//! The error bodies QuickBooks sends, byte-for-byte in shape: the standard `Fault`
//! envelope, the lower-case authentication envelope and the XML throttle body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::clock::Clock;

/// A JSON response with the content type QuickBooks uses.
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// The standard envelope: `{"Fault":{"Error":[{"Message","Detail","code","element"}],"type"},"time"}`.
pub fn fault(
    clock: &Clock,
    status: StatusCode,
    fault_type: &str,
    code: &str,
    message: &str,
    detail: &str,
) -> Response {
    let body = json!({"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}], "type": fault_type},
        "time": clock.envelope_time()});
    json_response(status, body.to_string())
}

/// The lower-case envelope of an expired token (captured from production), with `time`
/// as epoch milliseconds.
pub fn lowercase_auth(
    clock: &Clock,
    status: StatusCode,
    code: &str,
    fault_type: &str,
    detail: Option<&str>,
) -> Response {
    let message = format!(
        "message=AuthenticationFailed; errorCode={:0>6}; statusCode={}",
        code,
        status.as_u16()
    );
    let body = json!({"warnings": null, "intuitObject": null,
        "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": null}], "type": fault_type},
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": clock.now_utc().timestamp_millis(),
        "status": null, "cdcresponse": []});
    json_response(status, body.to_string())
}

/// The XML throttle body, sent even to JSON requests, without `Retry-After`.
pub fn throttle_xml(clock: &Clock, status: StatusCode, retry_after: Option<u64>) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<IntuitResponse time=\"{}\" xmlns=\"http://schema.intuit.com/finance/v3\">\n    <Fault type=\"SERVICE\">\n        <Error code=\"3001\">\n            <Message>message=ThrottleExceeded; errorCode=003001; statusCode={}</Message>\n            <Detail>The request limit was reached.  Try again later</Detail>\n        </Error>\n    </Fault>\n</IntuitResponse>\n",
        clock.envelope_time(),
        status.as_u16()
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A code-3001 throttle as a JSON `Fault` (older behaviour, HTTP 403).
pub fn throttle_json_403(clock: &Clock) -> Response {
    fault(
        clock,
        StatusCode::FORBIDDEN,
        "SERVICE",
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=403",
        "The request limit was reached.  Try again later",
    )
}

/// The OAuth error body: `{"error_description":..,"error":..}`.
pub fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({"error_description": d, "error": error}),
        None => json!({"error": error}),
    };
    json_response(status, body.to_string())
}
