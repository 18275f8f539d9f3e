//! Start-up of a Lambda function: a failure before the first event (a
//! secret that cannot be read, a bad variable) is reported through the
//! Runtime API's init-error endpoint with a clear message, so Lambda shows
//! the reason instead of "Runtime exited without providing a reason".

use crate::Chain;
use std::future::Future;

/// The error type Lambda shows for a failed start.
pub const INIT_ERROR_TYPE: &str = "Fieldgate.InitError";

/// Runs the function's start-up; on failure logs the whole cause chain,
/// reports it to the Runtime API (when running under one) and exits.
pub async fn init<T, E>(start: impl Future<Output = Result<T, E>>) -> T
where
    E: std::error::Error + 'static,
{
    // Boxed: a start-up that builds several parts at once is a deep future
    // type, and nesting it in `main`'s own future overflows rustc's query
    // depth limit when the layout is computed.
    match Box::pin(start).await {
        Ok(v) => v,
        Err(e) => {
            let message = Chain(&e).to_string();
            tracing::error!(error = %message, "start-up failed");
            if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
                && let Err(report) = report_init_error(&api, &message).await
            {
                tracing::error!(error = %Chain(&report), "could not report the start-up failure");
            }
            std::process::exit(1);
        }
    }
}

/// Why the start-up failure could not be reported.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("talking to the Runtime API at {api}")]
    Io {
        api: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Runtime API answered {0:?}")]
    Refused(String),
}

/// `POST /2018-06-01/runtime/init/error` on the Runtime API at `api`
/// (host:port, as `AWS_LAMBDA_RUNTIME_API` gives it). One plain HTTP/1.1
/// request by hand: the Runtime API is local and unencrypted, and an HTTP
/// client here would be linked into every function for this one call.
pub async fn report_init_error(api: &str, message: &str) -> Result<(), ReportError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({
        "errorMessage": message,
        "errorType": INIT_ERROR_TYPE,
        "stackTrace": [],
    })
    .to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: {INIT_ERROR_TYPE}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let io = |source| ReportError::Io {
        api: api.to_owned(),
        source,
    };
    let mut stream = tokio::net::TcpStream::connect(api).await.map_err(io)?;
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // Only the status line matters; stop reading once it is in.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(ReportError::Refused(status_line.to_owned())),
    }
}

/// On Lambda: the client address API Gateway saw
/// (`requestContext.http.sourceIp`), for per-client limits (intake, the
/// admin sign-in). Headers are never trusted for it: API Gateway appends
/// to X-Forwarded-For whatever the client sent.
pub async fn client_ip_from_api_gateway(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::request::RequestContext;
    let ip = req
        .extensions()
        .get::<RequestContext>()
        .and_then(|c| match c {
            RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref(),
            _ => None,
        })
        .and_then(|ip| ip.parse().ok());
    if let Some(ip) = ip {
        req.extensions_mut().insert(crate::http::ClientIp(ip));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

    #[tokio::test]
    async fn a_start_up_failure_reaches_the_runtime_api() {
        let seen: Seen = Default::default();
        let app = axum::Router::new()
            .route(
                "/2018-06-01/runtime/init/error",
                axum::routing::post(
                    |State(seen): State<Seen>,
                     h: HeaderMap,
                     body: axum::Json<serde_json::Value>| async move {
                        let kind = h["lambda-runtime-function-error-type"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        seen.lock().unwrap().push((kind, body.0));
                        axum::Json(serde_json::json!({"status": "OK"}))
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        report_init_error(&api, "FIELDGATE_KEYS_SECRET_ARN: not readable")
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, INIT_ERROR_TYPE);
        assert_eq!(
            seen[0].1["errorMessage"],
            "FIELDGATE_KEYS_SECRET_ARN: not readable"
        );
        assert_eq!(seen[0].1["errorType"], INIT_ERROR_TYPE);
    }

    #[tokio::test]
    async fn a_refused_report_is_an_error_naming_the_answer() {
        let app = axum::Router::new().route(
            "/2018-06-01/runtime/init/error",
            axum::routing::post(|| async { (http::StatusCode::FORBIDDEN, "no") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let err = report_init_error(&api, "x").await.unwrap_err();
        assert!(
            matches!(&err, ReportError::Refused(l) if l.contains("403")),
            "{err}"
        );
        // Nothing listening: an I/O error naming the address.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap().to_string();
        drop(closed);
        let err = report_init_error(&gone, "x").await.unwrap_err();
        assert!(err.to_string().contains(&gone), "{err}");
    }
}
