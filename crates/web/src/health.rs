//! `GET /healthz`: whether this server can answer — for load balancers,
//! systemd watchdogs and monitoring. 200 `ok` when a store read answers
//! within two seconds, 503 with the reason otherwise. No session, no data.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Web;

/// How long the store may take before the server counts as unhealthy.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(web): State<Arc<Web>>) -> impl IntoResponse {
    // A read every store answers from an index: cheap enough to poll.
    let probe = web.directory.store().is_local_domain("healthz.invalid");
    let (status, body) = match tokio::time::timeout(STORE_DEADLINE, probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_string()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store: error\n".to_string(),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store: no answer within 2 s\n".to_string(),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
}
