//! Salesforce's error shape and the transport-neutral response the
//! dispatcher produces (so composite subrequests can reuse it unchanged).

use serde_json::{Value, json};

pub const NOT_FOUND_MSG: &str = "The requested resource does not exist";

/// One entry of the `[{"message","errorCode","fields"}]` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `None` omits the key, as Salesforce does for session, limit and
    /// routing errors; DML errors always carry it (possibly empty).
    pub fields: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: None,
        }
    }

    /// A 400 DML error with its `fields` list.
    pub fn dml(code: &str, message: impl Into<String>, fields: Vec<String>) -> ApiError {
        ApiError {
            fields: Some(fields),
            ..ApiError::new(400, code, message)
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "NOT_FOUND", NOT_FOUND_MSG)
    }

    pub fn invalid_session() -> ApiError {
        ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    pub fn limit_exceeded() -> ApiError {
        ApiError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub fn json_parser(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "JSON_PARSER_ERROR", message)
    }

    pub fn entry(&self) -> Value {
        let mut v = json!({ "message": self.message, "errorCode": self.code });
        if let Some(fields) = &self.fields {
            v["fields"] = json!(fields);
        }
        v
    }

    pub fn body(&self) -> Value {
        Value::Array(vec![self.entry()])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Empty,
    Json(Value),
    Bytes { content_type: String, data: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resp {
    pub status: u16,
    pub body: Body,
    /// Only surfaced inside composite responses (`httpHeaders`).
    pub location: Option<String>,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            body: Body::Json(v),
            location: None,
        }
    }

    pub fn no_content() -> Resp {
        Resp {
            status: 204,
            body: Body::Empty,
            location: None,
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as composite reports it: JSON, or null when there is none.
    pub fn json_body(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            Body::Empty | Body::Bytes { .. } => Value::Null,
        }
    }
}

impl From<ApiError> for Resp {
    fn from(e: ApiError) -> Resp {
        Resp::json(e.status, e.body())
    }
}
