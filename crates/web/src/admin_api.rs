//! The admin API: JSON over HTTP under `/api/admin/`, authenticated by an admin
//! token (`Authorization: Bearer casella_admin_…`, from `casella admin token
//! create`). Accounts, protocol settings, and live sessions with the power to end
//! one. The admin pages use the same operations (see `admin_ops`). Like the
//! admin pages it answers only clients in `[web] admin-networks`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use casella_net::LiveSessions;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Web;
use crate::admin_ops::{self, OpError};

/// A request that carried a valid admin token.
pub struct AdminToken {
    #[allow(dead_code)]
    pub name: String,
}

impl FromRequestParts<Arc<Web>> for AdminToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let remote = crate::remote_of(parts);
        if !remote.is_some_and(|ip| web.admin_allowed(ip)) {
            return Err((
                StatusCode::FORBIDDEN,
                Json(json!({"error": "the admin API is not open to this network ([web] admin-networks)"})),
            )
                .into_response());
        }
        // A token is a password: not over plain HTTP from outside the
        // trusted networks.
        let tls = parts
            .extensions
            .get::<crate::server::Transport>()
            .is_some_and(|t| t.tls);
        if !remote.is_some_and(|ip| web.passwords_allowed(tls, ip)) {
            return Err((
                StatusCode::FORBIDDEN,
                Json(json!({"error": "use HTTPS: admin tokens are not accepted over plain HTTP from this network ([web] trusted-networks)"})),
            )
                .into_response());
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token.and_then(|t| web.tokens.check(t)) {
            Some(name) => Ok(AdminToken { name }),
            None => Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"casella admin\"")],
                Json(json!({"error": "a valid admin token is required (casella admin token create)"})),
            )
                .into_response()),
        }
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        let status = match &self {
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(
            "/api/admin/accounts",
            get(list_accounts).post(create_account),
        )
        .route(
            "/api/admin/accounts/{address}",
            get(show_account)
                .patch(update_account)
                .delete(delete_account),
        )
        .route(
            "/api/admin/settings/{protocol}",
            get(get_settings).patch(set_settings).put(set_settings),
        )
        .route(
            "/api/admin/accounts/{address}/signout",
            axum::routing::post(sign_out),
        )
        .route(
            "/api/admin/accounts/{address}/recoverable",
            get(list_recoverable),
        )
        .route(
            "/api/admin/accounts/{address}/recoverable/restore",
            axum::routing::post(restore_recoverable),
        )
        .route("/api/admin/sessions", get(list_sessions))
        .route(
            "/api/admin/sessions/{id}",
            axum::routing::delete(end_session),
        )
}

async fn list_accounts(_: AdminToken, State(web): State<Arc<Web>>) -> Result<Json<Value>, OpError> {
    Ok(Json(Value::Array(admin_ops::list_accounts(&web).await?)))
}

#[derive(Deserialize)]
struct NewAccountBody {
    address: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn create_account(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Json(body): Json<NewAccountBody>,
) -> Result<(StatusCode, Json<Value>), OpError> {
    let a = admin_ops::create_account(&web, &body.address, body.password, body.admin).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

async fn show_account(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
) -> Result<Json<Value>, OpError> {
    Ok(Json(admin_ops::show_account(&web, &address).await?))
}

/// `{"pop": "off", "retrieval-format": "text-only", "password": "…"}`: any of the
/// options `casella account set` knows, and `password`.
async fn update_account(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, OpError> {
    let pairs = pairs(body)?;
    admin_ops::update_account(&web, &address, &pairs).await?;
    Ok(Json(admin_ops::show_account(&web, &address).await?))
}

async fn delete_account(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
) -> Result<StatusCode, OpError> {
    admin_ops::delete_account(&web, &address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// "Sign out of all devices": `{"address": …, "sessions_ended": N}` (the open
/// mail sessions on this node; other nodes end theirs within a second).
async fn sign_out(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
) -> Result<Json<Value>, OpError> {
    let n = admin_ops::sign_out(&web, &address).await?;
    Ok(Json(
        json!({"address": address.trim().to_ascii_lowercase(), "sessions_ended": n}),
    ))
}

/// `GET …/recoverable[?since=UNIX&folder=NAME]`: the account's recoverable
/// items, oldest first.
async fn list_recoverable(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
    axum::extract::Query(filter): axum::extract::Query<RecoverQuery>,
) -> Result<Json<Value>, OpError> {
    let filter = casella_store::RecoverFilter {
        since: filter.since,
        folder: filter.folder,
    };
    Ok(Json(Value::Array(
        admin_ops::recoverable(&web, &address, &filter).await?,
    )))
}

#[derive(Deserialize)]
struct RecoverQuery {
    since: Option<i64>,
    folder: Option<String>,
}

/// `POST …/recoverable/restore` with `{"ids": [..]}`: puts them back.
async fn restore_recoverable(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(address): Path<String>,
    Json(body): Json<RestoreBody>,
) -> Result<Json<Value>, OpError> {
    if body.ids.is_empty() {
        return Err(OpError::Invalid("give the ids to restore".into()));
    }
    let restored = admin_ops::restore(&web, &address, &body.ids).await?;
    Ok(Json(json!({ "restored": restored })))
}

#[derive(Deserialize)]
struct RestoreBody {
    ids: Vec<i64>,
}

async fn get_settings(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(protocol): Path<String>,
) -> Result<Json<Value>, OpError> {
    let values = web.settings.get(&protocol).map_err(OpError::NotFound)?;
    Ok(Json(Value::Object(
        values
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )))
}

async fn set_settings(
    _: AdminToken,
    State(web): State<Arc<Web>>,
    Path(protocol): Path<String>,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, OpError> {
    let pairs = pairs(body)?;
    web.settings
        .set(&protocol, &pairs)
        .map_err(OpError::Invalid)?;
    get_settings(
        AdminToken {
            name: String::new(),
        },
        State(web),
        Path(protocol),
    )
    .await
}

/// A JSON object of strings, numbers and booleans as KEY=VALUE pairs.
fn pairs(body: serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, OpError> {
    body.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(OpError::Invalid(format!(
                        "{k}: a string, number or boolean, not {other}"
                    )));
                }
            };
            Ok((k, v))
        })
        .collect()
}

async fn list_sessions(_: AdminToken) -> Json<Value> {
    Json(json!(LiveSessions::global().list()))
}

async fn end_session(_: AdminToken, Path(id): Path<u64>) -> Result<StatusCode, OpError> {
    if LiveSessions::global().end(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(OpError::NotFound(format!("no live session {id}")))
    }
}
