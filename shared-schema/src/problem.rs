//! The `application/problem+json` body (RFC 9457).

use serde::{Deserialize, Serialize};

/// Media type of every error body on the platform.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as a client sees it.
///
/// `code` is a stable machine-readable identifier (`AUTH_TOKEN_EXPIRED`,
/// `DOWNSTREAM_TIMEOUT`...) that clients may switch on; `title` and `detail`
/// are for humans and may change. `trace_id` lets support find the request in
/// the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// URI reference identifying the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code of the problem.
    pub code: String,
    /// W3C trace id of the request, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Each invalid part of the request, when the problem is that some are
    /// (the `errors` extension member; RFC 9457 §3.2 allows extensions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InvalidParam>,
}

/// One invalid part of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidParam {
    /// A query parameter's name (`sort`), or a JSON Pointer into the body
    /// (`/lines/2/quantity`).
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Problem {
    /// A problem with the type URI derived from `code`.
    pub fn new(status: u16, code: &str, title: &str, detail: impl Into<Option<String>>) -> Self {
        Self {
            problem_type: format!(
                "https://errors.bff.dev/{}",
                code.to_ascii_lowercase().replace('_', "-")
            ),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            trace_id: None,
            errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_rfc9457_member_names() {
        let mut problem = Problem::new(
            404,
            "NOT_FOUND",
            "Not Found",
            Some("no product 7".to_owned()),
        );
        problem.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
        let json = serde_json::to_value(&problem).expect("serialises");
        assert_eq!(json["type"], "https://errors.bff.dev/not-found");
        assert_eq!(json["status"], 404);
        assert_eq!(json["code"], "NOT_FOUND");
        assert_eq!(json["detail"], "no product 7");
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn omits_absent_detail_and_trace_id() {
        let json =
            serde_json::to_value(Problem::new(500, "INTERNAL", "Internal Server Error", None))
                .expect("serialises");
        assert!(json.get("detail").is_none());
        assert!(json.get("trace_id").is_none());
    }
}
